-- How far each member has read a room. Keep in step with ../sqlite/0009_chat_read.sql: the
-- schema equivalence test compares the two after migration.
--
-- One row per (room, user) once the user marks something read: the agents' console counts a
-- room's unread messages (those above `read_seq` that others sent) for each agent on its own.
-- A marker only moves forward and never past the room's `last_seq` (the store checks both).
CREATE TABLE chat_read_markers (
    room_id  TEXT   NOT NULL,
    user_id  BIGINT NOT NULL,
    read_seq BIGINT NOT NULL DEFAULT 0,
    CONSTRAINT chat_read_markers_pkey PRIMARY KEY (room_id, user_id),
    CONSTRAINT chat_read_markers_read_seq_nonneg CHECK (read_seq >= 0),
    CONSTRAINT chat_read_markers_room_id_fkey FOREIGN KEY (room_id) REFERENCES chat_rooms (id)
        ON DELETE CASCADE
);
