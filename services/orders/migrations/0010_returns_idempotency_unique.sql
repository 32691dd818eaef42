-- no-transaction
-- One return per order and key. Requests are decided under the order's row lock, which is
-- what makes a repeat find the first; this index is the database's own word on it. Built
-- without blocking the writes of instances running meanwhile.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS returns_idempotency_key_per_order
    ON returns (order_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
