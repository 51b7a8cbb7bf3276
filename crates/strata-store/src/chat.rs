//! Chat rooms, their members and their messages. Every message gets its room's next id (`seq`)
//! in the transaction that stores it, so ids are gap-free and a committed id implies every
//! smaller one is committed too: a reader that sees id 7 can fetch 1 to 6 and find them all.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::StoreError;
use crate::store::{DbTime, Store, dispatch, retry_on_conflict};

/// What a room is for; decides who may join it (the chat role enforces that).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChatRoomKind {
    /// One customer's support room: that customer and any support agent or admin.
    Support,
    /// An agents' lobby: support agents and admins only.
    Lobby,
}

impl ChatRoomKind {
    /// The name stored in `chat_rooms.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatRoomKind::Support => "support",
            ChatRoomKind::Lobby => "lobby",
        }
    }
}

/// One stored chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ChatMessage {
    /// The room it was sent to.
    pub room_id: String,
    /// Its id within the room: 1, 2, 3, … in commit order, without gaps.
    pub seq: i64,
    /// The user who sent it.
    pub sender_id: i64,
    /// The sender's own id for it (de-duplicates retries).
    pub client_id: String,
    /// The text.
    pub body: String,
    /// When it was stored.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The outcome of [`ChatRepo::post`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posted {
    /// The stored message: the new one, or the one stored earlier under the same client id.
    pub message: ChatMessage,
    /// True when the client id had been used before: nothing new was stored.
    pub duplicate: bool,
}

/// Reads and writes chat rooms and messages. Obtained from [`Store::chat`].
#[derive(Clone, Copy, Debug)]
pub struct ChatRepo<'a> {
    store: &'a Store,
}

/// The columns of [`ChatMessage`], in a macro so queries stay `&'static str` literals.
macro_rules! columns {
    () => {
        "room_id, seq, sender_id, client_id, body, created_at"
    };
}

impl<'a> ChatRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Creates the room if it does not exist and records `user_id` as a member (both
    /// idempotent).
    ///
    /// # Errors
    /// When the database cannot be written.
    pub async fn join(
        &self,
        room: &str,
        kind: ChatRoomKind,
        user_id: i64,
    ) -> Result<(), StoreError> {
        dispatch!(self.store, pool => {
            sqlx::query(
                "INSERT INTO chat_rooms (id, kind, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(room)
            .bind(kind.as_str())
            .bind(DbTime::now())
            .execute(pool)
            .await?;
            sqlx::query(
                "INSERT INTO chat_room_members (room_id, user_id, joined_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (room_id, user_id) DO NOTHING",
            )
            .bind(room)
            .bind(user_id)
            .bind(DbTime::now())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// True when `user_id` joined `room`.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn is_member(&self, room: &str, user_id: i64) -> Result<bool, StoreError> {
        let found: Option<i64> = dispatch!(self.store, pool => {
            sqlx::query_scalar(
                "SELECT user_id FROM chat_room_members WHERE room_id = $1 AND user_id = $2",
            )
            .bind(room)
            .bind(user_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.is_some())
    }

    /// The members of `room`, by user id.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn members(&self, room: &str) -> Result<Vec<i64>, StoreError> {
        let members = dispatch!(self.store, pool => {
            sqlx::query_scalar(
                "SELECT user_id FROM chat_room_members WHERE room_id = $1 ORDER BY user_id",
            )
            .bind(room)
            .fetch_all(pool)
            .await?
        });
        Ok(members)
    }

    /// The id of the room's newest message (0 when it has none); `None` when there is no such
    /// room.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn last_seq(&self, room: &str) -> Result<Option<i64>, StoreError> {
        let last = dispatch!(self.store, pool => {
            sqlx::query_scalar("SELECT last_seq FROM chat_rooms WHERE id = $1")
                .bind(room)
                .fetch_optional(pool)
                .await?
        });
        Ok(last)
    }

    /// Stores a message under the room's next id, or finds the one `sender_id` already stored
    /// under `client_id`. `None` when the room does not exist.
    ///
    /// The room's row is locked first (`UPDATE … last_seq + 1`), which serializes the room's
    /// writers; the duplicate check runs under that lock, and a duplicate rolls the increment
    /// back, so ids stay gap-free.
    ///
    /// # Errors
    /// When the database cannot be written (after a few retries on write conflicts).
    pub async fn post(
        &self,
        room: &str,
        sender_id: i64,
        client_id: &str,
        body: &str,
    ) -> Result<Option<Posted>, StoreError> {
        retry_on_conflict(
            move || self.try_post(room, sender_id, client_id, body),
            // A unique violation means a concurrent send of the same client id won: the next
            // attempt finds its message.
            |e: &StoreError| matches!(e, StoreError::Conflict(_)) || e.is_unique_violation(),
        )
        .await
    }

    async fn try_post(
        &self,
        room: &str,
        sender_id: i64,
        client_id: &str,
        body: &str,
    ) -> Result<Option<Posted>, StoreError> {
        let begin = self.store.dialect().begin_write();
        let select_existing = concat!(
            "SELECT ",
            columns!(),
            " FROM chat_messages WHERE room_id = $1 AND sender_id = $2 AND client_id = $3"
        );
        let insert = concat!(
            "INSERT INTO chat_messages (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
            columns!()
        );
        let posted = dispatch!(self.store, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let seq: Option<i64> = sqlx::query_scalar(
                "UPDATE chat_rooms SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
            )
            .bind(room)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(seq) = seq else {
                return Ok(None);
            };
            let existing: Option<ChatMessage> = sqlx::query_as(select_existing)
                .bind(room)
                .bind(sender_id)
                .bind(client_id)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(message) = existing {
                tx.rollback().await?;
                return Ok(Some(Posted {
                    message,
                    duplicate: true,
                }));
            }
            let message: ChatMessage = sqlx::query_as(insert)
                .bind(room)
                .bind(seq)
                .bind(sender_id)
                .bind(client_id)
                .bind(body)
                .bind(DbTime::now())
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Posted {
                message,
                duplicate: false,
            }
        });
        Ok(Some(posted))
    }

    /// Up to `limit` messages of `room` with an id above `after`, oldest first.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn after(
        &self,
        room: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM chat_messages WHERE room_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        );
        let messages = dispatch!(self.store, pool => {
            sqlx::query_as(sql)
                .bind(room)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        Ok(messages)
    }

    /// Messages of `room` with ids in `after < seq < before`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn between(
        &self,
        room: &str,
        after: i64,
        before: i64,
        limit: u32,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM chat_messages WHERE room_id = $1 AND seq > $2 AND seq < $3 \
             ORDER BY seq LIMIT $4"
        );
        let messages = dispatch!(self.store, pool => {
            sqlx::query_as(sql)
                .bind(room)
                .bind(after)
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        Ok(messages)
    }
}
