-- An Idempotency-Key belongs to the user who sent it: another user's identical key is
-- another request.
ALTER TABLE orders DROP CONSTRAINT orders_idempotency_key_key;
CREATE UNIQUE INDEX orders_idempotency_key_per_user ON orders (user_id, idempotency_key);
