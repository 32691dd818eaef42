-- Ids of events accepted over HTTP, so the same id sent again is accepted once.
CREATE TABLE ingested (
    event_id    UUID PRIMARY KEY,
    client      TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    accepted_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ingested_accepted_at ON ingested (accepted_at);
