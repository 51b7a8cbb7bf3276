-- The product catalog. Keep in step with ../sqlite/0001_products.sql: the schema equivalence
-- test compares the two after migration (same columns, types through its mapping, nullability
-- and named constraints).
CREATE TABLE products (
    id          BIGINT GENERATED ALWAYS AS IDENTITY,
    sku         TEXT        NOT NULL,
    name        TEXT        NOT NULL,
    description TEXT        NOT NULL DEFAULT '',
    category    TEXT        NOT NULL,
    price_cents BIGINT      NOT NULL,
    stock       BIGINT      NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT products_pkey PRIMARY KEY (id),
    CONSTRAINT products_sku_key UNIQUE (sku),
    CONSTRAINT products_price_nonneg CHECK (price_cents >= 0),
    CONSTRAINT products_stock_nonneg CHECK (stock >= 0)
);

CREATE INDEX products_category_idx ON products (category);
