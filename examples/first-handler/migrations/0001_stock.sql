CREATE TABLE stock (
    sku       TEXT PRIMARY KEY,
    available INT NOT NULL CHECK (available >= 0)
);
