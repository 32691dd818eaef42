-- no-transaction
-- Built without blocking writes: the previous release's instances keep placing and ending
-- orders while it scans the table. Empty once no previous release runs.
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_deadline_unscheduled ON orders (deadline_at)
    WHERE status = 'pending' AND NOT deadline_scheduled;
