-- Returns of confirmed orders' lines: one row per return, the run of the return flow that
-- orders keeps. A new table: the previous release's instances never read it.
CREATE TABLE returns (
    id           UUID PRIMARY KEY,
    order_id     UUID NOT NULL REFERENCES orders (id),
    user_id      UUID NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'closed', 'cancelled')),
    reason       TEXT,
    detail       TEXT,
    lines        JSONB NOT NULL,
    refund_cents BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    finished_at  TIMESTAMPTZ
);

CREATE INDEX returns_by_order ON returns (order_id);
CREATE INDEX returns_pending ON returns (created_at) WHERE status = 'pending';
-- Finished returns by when they finished, for `conveyor flow reconcile`.
CREATE INDEX returns_finished ON returns (finished_at, id) WHERE status <> 'pending';
