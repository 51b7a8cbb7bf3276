-- Trace context on events. Keep in step with ../sqlite/0007_outbox_trace.sql.
--
-- The W3C `traceparent` of the work that wrote the event (a checkout's request, a worker's
-- handling of the event before it): the relay puts it in the envelope it publishes and the
-- handler that consumes the event continues that trace, so one checkout, its events and their
-- handling share one trace id. NULL for events written before this column, or by a writer
-- that had no trace.
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
