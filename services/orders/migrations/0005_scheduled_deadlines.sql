-- From this release on, each order's deadline is a scheduled event (order.deadline-passed)
-- written with the order. Orders placed by the previous release's instances during a
-- rolling upgrade have none: the column says which do (adding it rewrites nothing), and the
-- next migration's index finds the rest for the adopter.
ALTER TABLE orders ADD COLUMN deadline_scheduled BOOLEAN NOT NULL DEFAULT false;
