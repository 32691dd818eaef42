-- Failed sign-ins per login and client address, in the database so that every replica
-- counts the same attempts (see src/guessing.rs): past a few failures, each further
-- attempt from that address waits, twice as long after each failure.
CREATE TABLE sign_in_failures (
    -- The login as given (trimmed): an email or a client id, whether it exists or not.
    login          TEXT NOT NULL,
    -- The client's address (an IPv6 one by its /64), or `unknown`.
    address        TEXT NOT NULL,
    -- Attempts checked since the count last started; each is counted before its check, so
    -- attempts at once cannot all pass, and a success deletes the row.
    failures       INTEGER NOT NULL,
    last_failed_at TIMESTAMPTZ NOT NULL,
    -- Whether the latest attempt was let through to the password check (what the
    -- statement that counts it answers).
    checked        BOOLEAN NOT NULL,
    PRIMARY KEY (login, address)
);
-- The purge finds counts whose window has passed by their last failure.
CREATE INDEX sign_in_failures_last_failed_at ON sign_in_failures (last_failed_at);

-- How long a login and address wait after their `failures`-th failure before the next
-- check: no wait before the `free`-th failure, 1 s after it, twice as long after each
-- further one, at most `max_seconds` (the exponent is bounded: no count overflows).
CREATE FUNCTION sign_in_delay(failures INTEGER, free INTEGER, max_seconds DOUBLE PRECISION)
RETURNS INTERVAL
LANGUAGE sql IMMUTABLE
AS $$
    SELECT make_interval(secs => CASE
        WHEN failures < free THEN 0
        ELSE LEAST(power(2::float8, LEAST(failures - free, 40)), max_seconds)
    END)
$$;
