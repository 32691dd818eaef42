-- A return request's Idempotency-Key, so a client retrying after a timeout gets the return
-- it made instead of a second one. Nullable and without a default: adding it rewrites
-- nothing, and the previous release's inserts, which do not name it, leave it null.
ALTER TABLE returns ADD COLUMN idempotency_key TEXT;
