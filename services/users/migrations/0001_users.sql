CREATE TABLE users (
    id                 UUID PRIMARY KEY,
    email              TEXT NOT NULL UNIQUE,
    name               TEXT NOT NULL,
    line1              TEXT NOT NULL,
    city               TEXT NOT NULL,
    postal_code        TEXT NOT NULL,
    country            TEXT NOT NULL,
    credit_limit_cents BIGINT NOT NULL CHECK (credit_limit_cents >= 0),
    currency           TEXT NOT NULL,
    status             TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deactivated')),
    version            BIGINT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
