-- Carriers' pickups of returns' parcels: booked at the user's address, collected once the
-- carrier came (the scheduled return.received), or cancelled with their return.
CREATE TABLE pickups (
    id          UUID PRIMARY KEY,
    return_id   UUID NOT NULL UNIQUE,
    order_id    UUID NOT NULL,
    user_id     UUID NOT NULL,
    country     TEXT NOT NULL,
    lines       JSONB NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('booked', 'collecting', 'cancelled')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Returns for which no pickup could be booked, so a retry does not book one after all.
CREATE TABLE failed_pickups (
    return_id UUID PRIMARY KEY,
    reason    TEXT NOT NULL
);

CREATE TABLE cancelled_returns (
    return_id UUID PRIMARY KEY
);
