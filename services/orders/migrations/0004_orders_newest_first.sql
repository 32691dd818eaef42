-- GET /orders lists newest first, a page at a time, by (created_at, id): one index for a
-- user's orders (which also serves the per-user status filter) and one for all of them.
DROP INDEX orders_by_user;
CREATE INDEX orders_by_user_newest ON orders (user_id, created_at DESC, id DESC);
CREATE INDEX orders_newest ON orders (created_at DESC, id DESC);
