-- Who may get a token, and the keys tokens are signed with.
CREATE TABLE credentials (
    -- A person's email, or a producing system's client id.
    login       TEXT PRIMARY KEY,
    -- argon2id, in the PHC string format.
    secret_hash TEXT NOT NULL,
    -- The token's `sub`: a user's id, `admin:<email>` or `client:<id>`.
    subject     TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('user', 'admin', 'client')),
    scopes      TEXT[] NOT NULL DEFAULT '{}',
    -- The event types a client may publish over HTTP.
    event_types TEXT[] NOT NULL DEFAULT '{}',
    name        TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX credentials_user ON credentials (subject) WHERE kind = 'user';

-- Made at first start when JWT_PRIVATE_KEY is not set, so every replica signs with the same
-- key. A key stays published until it is retired, so tokens it signed stay valid meanwhile.
CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY,
    private_key_pem TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    retired_at      TIMESTAMPTZ
);
