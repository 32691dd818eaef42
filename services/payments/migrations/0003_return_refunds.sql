-- What closed returns gave back of a captured payment. Adding a column with a constant
-- default rewrites nothing, and its check is added NOT VALID (no scan under the table's lock;
-- the next migration validates it without blocking writes). The previous release's balance
-- ignores the column: it declines a little sooner until every instance runs this one.
ALTER TABLE payments ADD COLUMN returned_cents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE payments ADD CONSTRAINT payments_returned_within_amount
    CHECK (returned_cents BETWEEN 0 AND amount_cents) NOT VALID;

-- One row per closed return refunded.
CREATE TABLE return_refunds (
    return_id    UUID PRIMARY KEY,
    order_id     UUID NOT NULL,
    payment_id   UUID NOT NULL REFERENCES payments (id),
    amount_cents BIGINT NOT NULL CHECK (amount_cents >= 0),
    currency     TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
