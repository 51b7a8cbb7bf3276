-- Relay claims. Keep in step with ../postgres/0006_outbox_claims.sql (see there).
ALTER TABLE outbox ADD COLUMN claimed_until DATETIME;
