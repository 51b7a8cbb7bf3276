-- Relay claims. Keep in step with ../sqlite/0006_outbox_claims.sql.
--
-- A relay claims a batch of unsent events by setting `claimed_until` (a lease) in one short
-- statement, publishes them outside any transaction, then stamps `sent_at` in another; other
-- relays skip events whose claim has not expired. A relay that dies mid-batch leaves claims
-- that expire, and its events are published again by another (at least once).
ALTER TABLE outbox ADD COLUMN claimed_until TIMESTAMPTZ;
