CREATE TABLE products (
    sku         TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
    currency    TEXT NOT NULL,
    stock       INT NOT NULL CHECK (stock >= 0),
    reserved    INT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    version     BIGINT NOT NULL,
    CHECK (reserved <= stock)
);

-- One row per order this service acted on: reserved, then maybe released.
CREATE TABLE reservations (
    order_id UUID PRIMARY KEY,
    status   TEXT NOT NULL CHECK (status IN ('reserved', 'released', 'rejected')),
    items    JSONB NOT NULL
);

-- Orders known to be cancelled, so a late order.created is not acted on.
CREATE TABLE cancelled_orders (
    order_id UUID PRIMARY KEY
);
