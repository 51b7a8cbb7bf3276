-- Live chat: rooms, the users who joined them, and their messages. Keep in step with
-- ../sqlite/0004_chat.sql: the schema equivalence test compares the two after migration.
--
-- Users are not foreign keys here: chat trusts the signed token (any instance verifies it
-- without the store), and a room's history outlives the accounts that wrote in it.

-- A room: `support-<user id>` (a customer and the support staff) or `lobby-<name>` (staff
-- only). `last_seq` is the id of the room's newest message: the insert transaction bumps it
-- under the row's lock, so message ids are gap-free and in commit order on both dialects.
CREATE TABLE chat_rooms (
    id         TEXT        NOT NULL,
    kind       TEXT        NOT NULL,
    last_seq   BIGINT      NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT chat_rooms_pkey PRIMARY KEY (id),
    CONSTRAINT chat_rooms_kind_check CHECK (kind IN ('support', 'lobby')),
    CONSTRAINT chat_rooms_last_seq_nonneg CHECK (last_seq >= 0)
);

-- Who joined a room (and may read and write it): whose presence its members see.
CREATE TABLE chat_room_members (
    room_id   TEXT        NOT NULL,
    user_id   BIGINT      NOT NULL,
    joined_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT chat_room_members_pkey PRIMARY KEY (room_id, user_id),
    CONSTRAINT chat_room_members_room_id_fkey FOREIGN KEY (room_id) REFERENCES chat_rooms (id)
        ON DELETE CASCADE
);

-- A message: `seq` is its id within the room (1, 2, 3, … without gaps). `client_id` is the
-- sender's own id for it, unique per sender and room, so a message sent twice (a retry after
-- a lost acknowledgement) is stored once.
CREATE TABLE chat_messages (
    room_id    TEXT        NOT NULL,
    seq        BIGINT      NOT NULL,
    sender_id  BIGINT      NOT NULL,
    client_id  TEXT        NOT NULL,
    body       TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT chat_messages_pkey PRIMARY KEY (room_id, seq),
    CONSTRAINT chat_messages_client_id_key UNIQUE (room_id, sender_id, client_id),
    CONSTRAINT chat_messages_seq_positive CHECK (seq > 0),
    CONSTRAINT chat_messages_room_id_fkey FOREIGN KEY (room_id) REFERENCES chat_rooms (id)
        ON DELETE CASCADE
);
