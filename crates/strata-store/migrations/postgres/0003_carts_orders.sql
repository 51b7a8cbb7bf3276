-- Coupons, carts, orders, idempotency keys and the outbox. Keep in step with
-- ../sqlite/0003_carts_orders.sql: the schema equivalence test compares the two after
-- migration. Money is integer cents; rates are basis points (1 bp = 0.01 %).

-- Coupon rules, looked up by the code customers type (stored upper case). `amount` is basis
-- points for a `percent` coupon (at most 100 %) and cents for a `fixed` one. A coupon is valid
-- while `now() < expires_at` (NULL: forever) and when the subtotal reaches the minimum.
CREATE TABLE coupons (
    code               TEXT        NOT NULL,
    kind               TEXT        NOT NULL,
    amount             BIGINT      NOT NULL,
    min_subtotal_cents BIGINT      NOT NULL DEFAULT 0,
    expires_at         TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT coupons_pkey PRIMARY KEY (code),
    CONSTRAINT coupons_kind_check CHECK (kind IN ('percent', 'fixed')),
    CONSTRAINT coupons_amount_positive CHECK (amount > 0),
    CONSTRAINT coupons_percent_at_most_100 CHECK (kind <> 'percent' OR amount <= 10000),
    CONSTRAINT coupons_min_subtotal_nonneg CHECK (min_subtotal_cents >= 0)
);

-- Demo coupons, so a fresh shop has some to try (one of them long expired).
INSERT INTO coupons (code, kind, amount, min_subtotal_cents, expires_at) VALUES
    ('WELCOME10', 'percent', 1000, 0, NULL),
    ('SAVE5', 'fixed', 500, 2500, NULL),
    ('BIG20', 'percent', 2000, 20000, NULL),
    ('SUMMER15', 'percent', 1500, 0, '2025-09-01T00:00:00.000Z');

-- A cart belongs to exactly one owner: a user, or the holder of an anonymous cart cookie
-- (`anon_token`, the cookie's 128-bit random value in hex). `updated_at` moves on every change,
-- so abandoned anonymous carts can be swept.
CREATE TABLE carts (
    id         BIGINT GENERATED ALWAYS AS IDENTITY,
    user_id    BIGINT,
    anon_token TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT carts_pkey PRIMARY KEY (id),
    CONSTRAINT carts_user_id_key UNIQUE (user_id),
    CONSTRAINT carts_anon_token_key UNIQUE (anon_token),
    CONSTRAINT carts_one_owner CHECK ((user_id IS NULL) <> (anon_token IS NULL)),
    CONSTRAINT carts_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);

-- One line per product in a cart. The line-count limit (50) is enforced by the repository
-- under the cart's row lock; the quantity range here as well, as a last line of defence.
CREATE TABLE cart_items (
    cart_id    BIGINT      NOT NULL,
    product_id BIGINT      NOT NULL,
    quantity   BIGINT      NOT NULL,
    added_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT cart_items_pkey PRIMARY KEY (cart_id, product_id),
    CONSTRAINT cart_items_quantity_range CHECK (quantity >= 1 AND quantity <= 99),
    CONSTRAINT cart_items_cart_id_fkey FOREIGN KEY (cart_id) REFERENCES carts (id)
        ON DELETE CASCADE,
    CONSTRAINT cart_items_product_id_fkey FOREIGN KEY (product_id) REFERENCES products (id)
        ON DELETE CASCADE
);

-- An order, priced once at checkout by the quote function; its amounts never change after.
CREATE TABLE orders (
    id             BIGINT GENERATED ALWAYS AS IDENTITY,
    user_id        BIGINT      NOT NULL,
    status         TEXT        NOT NULL DEFAULT 'placed',
    region         TEXT        NOT NULL,
    tax_rate_bps   BIGINT      NOT NULL,
    coupon_code    TEXT,
    subtotal_cents BIGINT      NOT NULL,
    discount_cents BIGINT      NOT NULL,
    tax_cents      BIGINT      NOT NULL,
    total_cents    BIGINT      NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT orders_pkey PRIMARY KEY (id),
    CONSTRAINT orders_status_check
        CHECK (status IN ('placed', 'paid', 'shipped', 'cancelled')),
    CONSTRAINT orders_amounts_nonneg CHECK (subtotal_cents >= 0 AND discount_cents >= 0
        AND tax_cents >= 0 AND total_cents >= 0),
    CONSTRAINT orders_total_adds_up
        CHECK (total_cents = subtotal_cents - discount_cents + tax_cents),
    CONSTRAINT orders_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id)
);

CREATE INDEX orders_user_id_idx ON orders (user_id, id);

-- The lines of an order at the prices quoted at checkout; `sku` and `name` are copied so the
-- order reads the same after the catalog changes.
CREATE TABLE order_lines (
    order_id         BIGINT NOT NULL,
    position         BIGINT NOT NULL,
    product_id       BIGINT NOT NULL,
    sku              TEXT   NOT NULL,
    name             TEXT   NOT NULL,
    unit_price_cents BIGINT NOT NULL,
    quantity         BIGINT NOT NULL,
    discount_cents   BIGINT NOT NULL,
    total_cents      BIGINT NOT NULL,
    CONSTRAINT order_lines_pkey PRIMARY KEY (order_id, position),
    CONSTRAINT order_lines_product_key UNIQUE (order_id, product_id),
    CONSTRAINT order_lines_quantity_range CHECK (quantity >= 1 AND quantity <= 99),
    CONSTRAINT order_lines_amounts_nonneg
        CHECK (unit_price_cents >= 0 AND discount_cents >= 0 AND total_cents >= 0),
    CONSTRAINT order_lines_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id)
        ON DELETE CASCADE,
    CONSTRAINT order_lines_product_id_fkey FOREIGN KEY (product_id) REFERENCES products (id)
);

-- Every status an order has been in, oldest first: `placed` at checkout, later moves by the
-- worker (issue 6).
CREATE TABLE order_status_history (
    id       BIGINT GENERATED ALWAYS AS IDENTITY,
    order_id BIGINT      NOT NULL,
    status   TEXT        NOT NULL,
    at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT order_status_history_pkey PRIMARY KEY (id),
    CONSTRAINT order_status_history_status_check
        CHECK (status IN ('placed', 'paid', 'shipped', 'cancelled')),
    CONSTRAINT order_status_history_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id)
        ON DELETE CASCADE
);

CREATE INDEX order_status_history_order_id_idx ON order_status_history (order_id, id);

-- Checkout idempotency: one row per (user, Idempotency-Key), inserted first in the checkout
-- transaction, so a concurrent replay waits on the key and then reads the winner's order.
-- `request_fingerprint` is the canonical request body; `order_id` is set before commit (it is
-- NULL only inside the inserting transaction). Failed checkouts roll back and leave no row.
CREATE TABLE idempotency_keys (
    user_id             BIGINT      NOT NULL,
    idempotency_key     TEXT        NOT NULL,
    request_fingerprint TEXT        NOT NULL,
    order_id            BIGINT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (user_id, idempotency_key),
    CONSTRAINT idempotency_keys_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id)
        ON DELETE CASCADE,
    CONSTRAINT idempotency_keys_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id)
        ON DELETE CASCADE
);

-- Events written in the same transaction as the change they announce; the worker relays unsent
-- ones to the bus and stamps `sent_at` (at least once: consumers are idempotent).
CREATE TABLE outbox (
    id         BIGINT GENERATED ALWAYS AS IDENTITY,
    topic      TEXT        NOT NULL,
    payload    TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at    TIMESTAMPTZ,
    CONSTRAINT outbox_pkey PRIMARY KEY (id)
);

CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;
