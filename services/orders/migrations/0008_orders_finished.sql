-- no-transaction
-- Finished orders by when they finished, for `conveyor flow reconcile`, which pages through
-- them; built without blocking the writes of instances running meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_finished ON orders (finished_at, id)
    WHERE status <> 'pending';
