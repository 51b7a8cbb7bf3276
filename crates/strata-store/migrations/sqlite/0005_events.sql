-- no-transaction
-- The event pipeline: the `payment_failed` status, the events each handler has applied, and
-- the customers' notifications. Keep in step with ../postgres/0005_events.sql: the schema
-- equivalence test compares the two after migration.
--
-- SQLite cannot alter a CHECK constraint, so `orders` and `order_status_history` are rebuilt
-- the documented way (https://sqlite.org/lang_altertable.html, "other kinds of table schema
-- changes"): foreign keys off (which only works outside a transaction, hence `no-transaction`
-- above), then one transaction that copies each table into a new one, drops the old one and
-- renames the new one, then a foreign key check, then foreign keys on again. Dropping `orders`
-- with foreign keys off does not cascade to its lines.
PRAGMA foreign_keys = OFF;

BEGIN IMMEDIATE;

-- AUTOINCREMENT never reuses an id; keep the counters the old tables had reached.
CREATE TEMP TABLE kept_sequences AS
    SELECT name, seq FROM sqlite_sequence WHERE name IN ('orders', 'order_status_history');

CREATE TABLE orders_new (
    id INTEGER NOT NULL CONSTRAINT orders_pkey PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'placed',
    region TEXT NOT NULL,
    tax_rate_bps INTEGER NOT NULL,
    coupon_code TEXT,
    subtotal_cents INTEGER NOT NULL,
    discount_cents INTEGER NOT NULL,
    tax_cents INTEGER NOT NULL,
    total_cents INTEGER NOT NULL,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT orders_status_check
        CHECK (status IN ('placed', 'paid', 'payment_failed', 'shipped', 'cancelled')),
    CONSTRAINT orders_amounts_nonneg CHECK (subtotal_cents >= 0 AND discount_cents >= 0
        AND tax_cents >= 0 AND total_cents >= 0),
    CONSTRAINT orders_total_adds_up
        CHECK (total_cents = subtotal_cents - discount_cents + tax_cents),
    CONSTRAINT orders_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id)
);
INSERT INTO orders_new (id, user_id, status, region, tax_rate_bps, coupon_code, subtotal_cents,
        discount_cents, tax_cents, total_cents, created_at, updated_at)
    SELECT id, user_id, status, region, tax_rate_bps, coupon_code, subtotal_cents,
        discount_cents, tax_cents, total_cents, created_at, updated_at FROM orders;
DROP TABLE orders;
ALTER TABLE orders_new RENAME TO orders;
CREATE INDEX orders_user_id_idx ON orders (user_id, id);

CREATE TABLE order_status_history_new (
    id INTEGER NOT NULL CONSTRAINT order_status_history_pkey PRIMARY KEY AUTOINCREMENT,
    order_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT order_status_history_status_check
        CHECK (status IN ('placed', 'paid', 'payment_failed', 'shipped', 'cancelled')),
    CONSTRAINT order_status_history_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id)
        ON DELETE CASCADE
);
INSERT INTO order_status_history_new (id, order_id, status, at)
    SELECT id, order_id, status, at FROM order_status_history;
DROP TABLE order_status_history;
ALTER TABLE order_status_history_new RENAME TO order_status_history;
CREATE INDEX order_status_history_order_id_idx ON order_status_history (order_id, id);

UPDATE sqlite_sequence
    SET seq = MAX(seq, (SELECT k.seq FROM kept_sequences k WHERE k.name = sqlite_sequence.name))
    WHERE name IN (SELECT name FROM kept_sequences);
INSERT INTO sqlite_sequence (name, seq)
    SELECT name, seq FROM kept_sequences
    WHERE name NOT IN (SELECT name FROM sqlite_sequence);
DROP TABLE kept_sequences;

-- Every event a handler has applied, written in the same transaction as the handler's effects:
-- a redelivered event finds its row and changes nothing the second time. `event_id` is the
-- outbox id the event was relayed from.
CREATE TABLE processed_events (
    handler TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    processed_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT processed_events_pkey PRIMARY KEY (handler, event_id)
);

-- One notification per status change of an order, for its customer. `event_id` is unique: an
-- event notifies once, however often it is delivered.
CREATE TABLE notifications (
    id INTEGER NOT NULL CONSTRAINT notifications_pkey PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    order_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT notifications_event_id_key UNIQUE (event_id),
    CONSTRAINT notifications_kind_check
        CHECK (kind IN ('placed', 'paid', 'payment_failed', 'shipped', 'cancelled')),
    CONSTRAINT notifications_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id)
        ON DELETE CASCADE,
    CONSTRAINT notifications_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id)
        ON DELETE CASCADE
);

CREATE INDEX notifications_user_id_idx ON notifications (user_id, id);

-- The relay prunes sent events by age.
CREATE INDEX outbox_sent_at_idx ON outbox (sent_at) WHERE sent_at IS NOT NULL;

COMMIT;

PRAGMA foreign_keys = ON;
