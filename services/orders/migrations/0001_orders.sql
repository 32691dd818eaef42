-- Cached copies: just what placing an order needs, with the source's version.
CREATE TABLE users_cache (
    user_id UUID PRIMARY KEY,
    active  BOOLEAN NOT NULL,
    version BIGINT NOT NULL
);

CREATE TABLE products_cache (
    sku         TEXT PRIMARY KEY,
    price_cents BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    version     BIGINT NOT NULL
);

CREATE TABLE orders (
    id              UUID PRIMARY KEY,
    user_id         UUID NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'cancelled')),
    reason          TEXT,
    detail          TEXT,
    items           JSONB NOT NULL,
    total_cents     BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    deadline_at     TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ
);

CREATE INDEX orders_by_user ON orders (user_id, status);
CREATE INDEX orders_pending_deadline ON orders (deadline_at) WHERE status = 'pending';
