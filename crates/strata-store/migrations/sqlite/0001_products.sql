-- The product catalog. Keep in step with ../postgres/0001_products.sql: the schema equivalence
-- test compares the two after migration (same columns, types through its mapping, nullability
-- and named constraints).
--
-- Mapping from PostgreSQL: BIGINT -> INTEGER (SQLite integers are 64-bit; `id` must be spelled
-- exactly INTEGER to alias the rowid), TIMESTAMPTZ -> DATETIME holding UTC RFC 3339 text with
-- milliseconds ('2026-11-22T10:00:00.123Z'), which sorts chronologically as text and decodes to
-- `time::OffsetDateTime`. AUTOINCREMENT keeps ids from being reused, like an identity column.
CREATE TABLE products (
    id          INTEGER  NOT NULL CONSTRAINT products_pkey PRIMARY KEY AUTOINCREMENT,
    sku         TEXT     NOT NULL,
    name        TEXT     NOT NULL,
    description TEXT     NOT NULL DEFAULT '',
    category    TEXT     NOT NULL,
    price_cents INTEGER  NOT NULL,
    stock       INTEGER  NOT NULL,
    created_at  DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT products_sku_key UNIQUE (sku),
    CONSTRAINT products_price_nonneg CHECK (price_cents >= 0),
    CONSTRAINT products_stock_nonneg CHECK (stock >= 0)
);

CREATE INDEX products_category_idx ON products (category);
