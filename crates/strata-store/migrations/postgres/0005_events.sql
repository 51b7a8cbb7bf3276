-- The event pipeline: the `payment_failed` status, the events each handler has applied, and
-- the customers' notifications. Keep in step with ../sqlite/0005_events.sql: the schema
-- equivalence test compares the two after migration.

-- A payment the provider declined ends an order: its stock goes back.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('placed', 'paid', 'payment_failed', 'shipped', 'cancelled'));
ALTER TABLE order_status_history DROP CONSTRAINT order_status_history_status_check;
ALTER TABLE order_status_history ADD CONSTRAINT order_status_history_status_check
    CHECK (status IN ('placed', 'paid', 'payment_failed', 'shipped', 'cancelled'));

-- Every event a handler has applied, written in the same transaction as the handler's effects:
-- a redelivered event finds its row and changes nothing the second time. `event_id` is the
-- outbox id the event was relayed from.
CREATE TABLE processed_events (
    handler      TEXT        NOT NULL,
    event_id     BIGINT      NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT processed_events_pkey PRIMARY KEY (handler, event_id)
);

-- One notification per status change of an order, for its customer. `event_id` is unique: an
-- event notifies once, however often it is delivered.
CREATE TABLE notifications (
    id         BIGINT GENERATED ALWAYS AS IDENTITY,
    user_id    BIGINT      NOT NULL,
    order_id   BIGINT      NOT NULL,
    kind       TEXT        NOT NULL,
    message    TEXT        NOT NULL,
    event_id   BIGINT      NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT notifications_pkey PRIMARY KEY (id),
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
