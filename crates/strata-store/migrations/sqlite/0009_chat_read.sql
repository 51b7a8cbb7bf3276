-- How far each member has read a room. Keep in step with ../postgres/0009_chat_read.sql (see
-- there); BIGINT -> INTEGER as in 0001.
CREATE TABLE chat_read_markers (
    room_id TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    read_seq INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT chat_read_markers_pkey PRIMARY KEY (room_id, user_id),
    CONSTRAINT chat_read_markers_read_seq_nonneg CHECK (read_seq >= 0),
    CONSTRAINT chat_read_markers_room_id_fkey FOREIGN KEY (room_id) REFERENCES chat_rooms (id)
        ON DELETE CASCADE
);
