-- The cached copy of users: only what payments needs, with the source's version.
CREATE TABLE users_cache (
    user_id            UUID PRIMARY KEY,
    credit_limit_cents BIGINT,
    currency           TEXT,
    active             BOOLEAN NOT NULL,
    version            BIGINT NOT NULL
);

CREATE TABLE payments (
    id           UUID PRIMARY KEY,
    order_id     UUID NOT NULL UNIQUE,
    user_id      UUID NOT NULL,
    amount_cents BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('captured', 'refunded', 'declined')),
    reason       TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE cancelled_orders (
    order_id UUID PRIMARY KEY
);
