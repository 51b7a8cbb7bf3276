-- The checkout transaction of crates/strata-store/src/orders.rs, statement for statement, as a
-- pgbench script (bench/api.sh, and the start of each order's chain in bench/events.sh).
-- Variables: n (0), first, clients, run, fingerprint, placed (the order.placed payload);
-- user = first + client_id + clients × (n − 1).
\set n :n + 1
\set uid :first + :client_id + :clients * (:n - 1)
\set ikey :run * 10000000 + :n
BEGIN;
INSERT INTO idempotency_keys (user_id, idempotency_key, request_fingerprint, created_at) VALUES (:uid, :ikey, :fingerprint, now()) ON CONFLICT (user_id, idempotency_key) DO NOTHING;
UPDATE carts SET updated_at = now() WHERE user_id = :uid RETURNING id AS cart_id \gset
DELETE FROM cart_items WHERE cart_id = :cart_id RETURNING product_id, quantity \gset
UPDATE products SET stock = stock - :quantity WHERE id = :product_id AND stock >= :quantity RETURNING sku, name, price_cents, price_cents * :quantity AS subtotal, (price_cents * :quantity * 1900 + 5000) / 10000 AS tax, price_cents * :quantity + (price_cents * :quantity * 1900 + 5000) / 10000 AS total \gset
INSERT INTO orders (user_id, status, region, tax_rate_bps, coupon_code, subtotal_cents, discount_cents, tax_cents, total_cents, created_at, updated_at) VALUES (:uid, 'placed', 'EU-DE', 1900, NULL, :subtotal, 0, :tax, :total, now(), now()) RETURNING id AS order_id \gset
INSERT INTO order_lines (order_id, position, product_id, sku, name, unit_price_cents, quantity, discount_cents, total_cents) VALUES (:order_id, 1, :product_id, :sku, :name, :price_cents, :quantity, 0, :subtotal);
INSERT INTO order_status_history (order_id, status, at) VALUES (:order_id, 'placed', now());
INSERT INTO outbox (topic, payload, created_at) VALUES ('order.placed', :placed, now());
UPDATE idempotency_keys SET order_id = :order_id WHERE user_id = :uid AND idempotency_key = :ikey;
COMMIT;
