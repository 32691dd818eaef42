-- When a watchdog last looked at the deadlines; a long silence (every orders instance down,
-- or the broker away) is discounted from every pending deadline.
CREATE TABLE saga_clock (
    id        INT PRIMARY KEY CHECK (id = 1),
    ticked_at TIMESTAMPTZ NOT NULL
);
INSERT INTO saga_clock (id, ticked_at) VALUES (1, clock_timestamp());
