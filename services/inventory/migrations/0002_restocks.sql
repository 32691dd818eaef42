-- One row per closed return whose lines were put back in stock.
CREATE TABLE restocks (
    return_id UUID PRIMARY KEY,
    order_id  UUID NOT NULL,
    items     JSONB NOT NULL,
    restocked_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
