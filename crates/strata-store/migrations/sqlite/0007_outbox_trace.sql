-- Trace context on events. Keep in step with ../postgres/0007_outbox_trace.sql (see there).
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
