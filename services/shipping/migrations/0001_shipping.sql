-- The cached copy of users: their address, with the source's version.
CREATE TABLE users_cache (
    user_id     UUID PRIMARY KEY,
    line1       TEXT,
    city        TEXT,
    postal_code TEXT,
    country     TEXT,
    active      BOOLEAN NOT NULL,
    version     BIGINT NOT NULL
);

CREATE TABLE shipments (
    id          UUID PRIMARY KEY,
    order_id    UUID NOT NULL UNIQUE,
    user_id     UUID NOT NULL,
    country     TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('scheduled', 'cancelled')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Orders whose shipment failed, so a retry does not schedule it after all.
CREATE TABLE failed_orders (
    order_id UUID PRIMARY KEY,
    reason   TEXT NOT NULL
);

CREATE TABLE cancelled_orders (
    order_id UUID PRIMARY KEY
);
