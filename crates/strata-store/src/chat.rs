//! Chat rooms, their members and their messages. Every message gets its room's next id (`seq`)
//! in the transaction that stores it, so ids are gap-free and a committed id implies every
//! smaller one is committed too: a reader that sees id 7 can fetch 1 to 6 and find them all.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::OffsetDateTime;

use crate::StoreError;
use crate::store::{Backend, DbTime, Store, dispatch, retry_on_conflict};

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
    /// The sender's display name, read with the message from `users`; empty when no account
    /// has the sender's id (a room's history outlives the accounts that wrote in it).
    #[serde(default)]
    pub sender_name: String,
    /// The sender's own id for it (de-duplicates retries).
    pub client_id: String,
    /// The text.
    pub body: String,
    /// When it was stored.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A support room as an agent's console lists it ([`ChatRepo::support_rooms`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupportRoom {
    /// The room id, `support-<customer id>`.
    pub room_id: String,
    /// The customer's display name; empty when no account has the room's customer id.
    pub customer_name: String,
    /// Messages above the agent's read marker sent by someone else.
    pub unread: i64,
    /// The room's newest message, if it has one.
    pub last: Option<ChatMessage>,
}

/// A row of [`ChatRepo::support_rooms`]: the newest message's columns are NULL when the room
/// has none.
#[derive(sqlx::FromRow)]
struct SupportRow {
    room_id: String,
    customer_name: String,
    unread: i64,
    seq: Option<i64>,
    sender_id: Option<i64>,
    sender_name: String,
    client_id: Option<String>,
    body: Option<String>,
    created_at: Option<OffsetDateTime>,
}

impl From<SupportRow> for SupportRoom {
    fn from(row: SupportRow) -> Self {
        let last = match (row.seq, row.sender_id, row.created_at) {
            (Some(seq), Some(sender_id), Some(created_at)) => Some(ChatMessage {
                room_id: row.room_id.clone(),
                seq,
                sender_id,
                sender_name: row.sender_name,
                client_id: row.client_id.unwrap_or_default(),
                body: row.body.unwrap_or_default(),
                created_at,
            }),
            _ => None,
        };
        Self {
            room_id: row.room_id,
            customer_name: row.customer_name,
            unread: row.unread,
            last,
        }
    }
}

/// The outcome of [`ChatRepo::post`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posted {
    /// The stored message: the new one, or the one stored earlier under the same client id.
    pub message: ChatMessage,
    /// True when the client id had been used before: nothing new was stored.
    pub duplicate: bool,
}

/// One message for [`ChatRepo::post_many`]: `(room, sender id, client id, body)`.
pub type NewChatMessage<'a> = (&'a str, i64, &'a str, &'a str);

/// What a batch does, decided under its rooms' locks: the answer for each post, the new
/// messages with their ids, and each written room's new `last_seq`.
#[derive(Debug)]
struct Plan {
    answers: Vec<Option<Posted>>,
    fresh: Vec<ChatMessage>,
    last_seq: BTreeMap<String, i64>,
}

impl Plan {
    /// `rooms`: the existing rooms of the batch and their `last_seq`; `existing`: messages
    /// already stored under one of the batch's (room, sender, client id).
    fn new(
        posts: &[NewChatMessage<'_>],
        rooms: HashMap<String, i64>,
        existing: Vec<ChatMessage>,
        names: &HashMap<i64, String>,
        now: OffsetDateTime,
    ) -> Self {
        let mut known: HashMap<(String, i64, String), ChatMessage> = existing
            .into_iter()
            .map(|m| ((m.room_id.clone(), m.sender_id, m.client_id.clone()), m))
            .collect();
        let mut last_seq = BTreeMap::new();
        let mut fresh = Vec::new();
        let mut answers = Vec::with_capacity(posts.len());
        for &(room, sender_id, client_id, body) in posts {
            let Some(&stored_last) = rooms.get(room) else {
                answers.push(None);
                continue;
            };
            let key = (room.to_owned(), sender_id, client_id.to_owned());
            if let Some(message) = known.get(&key) {
                answers.push(Some(Posted {
                    message: message.clone(),
                    duplicate: true,
                }));
                continue;
            }
            let last = last_seq.entry(room.to_owned()).or_insert(stored_last);
            *last += 1;
            let message = ChatMessage {
                room_id: room.to_owned(),
                seq: *last,
                sender_id,
                sender_name: names.get(&sender_id).cloned().unwrap_or_default(),
                client_id: client_id.to_owned(),
                body: body.to_owned(),
                created_at: now,
            };
            known.insert(key, message.clone());
            fresh.push(message.clone());
            answers.push(Some(Posted {
                message,
                duplicate: false,
            }));
        }
        Self {
            answers,
            fresh,
            last_seq,
        }
    }
}

/// Reads and writes chat rooms and messages. Obtained from [`Store::chat`].
#[derive(Clone, Copy, Debug)]
pub struct ChatRepo<'a> {
    store: &'a Store,
}

/// The stored columns of [`ChatMessage`], in a macro so queries stay `&'static str` literals.
macro_rules! columns {
    () => {
        "room_id, seq, sender_id, client_id, body, created_at"
    };
}

/// `SELECT` of whole [`ChatMessage`]s: the stored columns of `chat_messages m` and the
/// sender's display name from `users u`; follow with [`messages_from!`].
macro_rules! message_select {
    () => {
        "SELECT m.room_id, m.seq, m.sender_id, m.client_id, m.body, m.created_at, \
         COALESCE(u.display_name, '') AS sender_name"
    };
}

/// The `FROM` of [`message_select!`].
macro_rules! messages_from {
    () => {
        " FROM chat_messages m LEFT JOIN users u ON u.id = m.sender_id"
    };
}

/// [`ChatRepo::post_many`] on PostgreSQL, as one statement: `$1`–`$4` the posts' rooms,
/// senders, client ids and bodies, `$5` the time. One row per post, in order (`ord` from 1):
/// the room's columns are NULL when the room does not exist; `stored_by` is the `ord` of the
/// post that stored the message now, NULL when it was stored before.
const POST_MANY_PG: &str = "\
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[])
        WITH ORDINALITY AS m(room_id, sender_id, client_id, body, ord)
), locked AS (
    SELECT id, last_seq FROM chat_rooms
    WHERE id IN (SELECT room_id FROM input)
    ORDER BY id
    FOR UPDATE
), existing AS (
    SELECT room_id, seq, sender_id, client_id, body, created_at FROM chat_messages
    WHERE (room_id, sender_id, client_id) IN (SELECT room_id, sender_id, client_id FROM input)
), fresh AS (
    SELECT DISTINCT ON (i.room_id, i.sender_id, i.client_id) i.*
    FROM input i JOIN locked l ON l.id = i.room_id
    WHERE NOT EXISTS (
        SELECT 1 FROM existing e
        WHERE (e.room_id, e.sender_id, e.client_id) = (i.room_id, i.sender_id, i.client_id))
    ORDER BY i.room_id, i.sender_id, i.client_id, i.ord
), numbered AS (
    SELECT f.ord, f.room_id,
           l.last_seq + row_number() OVER (PARTITION BY f.room_id ORDER BY f.ord) AS seq,
           f.sender_id, f.client_id, f.body, $5::timestamptz AS created_at
    FROM fresh f JOIN locked l ON l.id = f.room_id
), inserted AS (
    INSERT INTO chat_messages (room_id, seq, sender_id, client_id, body, created_at)
    SELECT room_id, seq, sender_id, client_id, body, created_at FROM numbered
), bumped AS (
    UPDATE chat_rooms r SET last_seq = n.last_seq
    FROM (SELECT room_id, max(seq) AS last_seq FROM numbered GROUP BY room_id) n
    WHERE r.id = n.room_id
)
SELECT i.ord, s.stored_by, s.room_id, s.seq, s.sender_id, s.client_id, s.body, s.created_at,
       COALESCE(u.display_name, '') AS sender_name
FROM input i
LEFT JOIN (
    SELECT NULL::int8 AS stored_by, e.* FROM existing e
    UNION ALL
    SELECT ord, room_id, seq, sender_id, client_id, body, created_at FROM numbered
) s ON (s.room_id, s.sender_id, s.client_id) = (i.room_id, i.sender_id, i.client_id)
LEFT JOIN users u ON u.id = s.sender_id
ORDER BY i.ord";

impl<'a> ChatRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Creates the room if it does not exist and records `user_id` as a member (both
    /// idempotent); true when the user was not a member before (the room's roster changed).
    ///
    /// # Errors
    /// When the database cannot be written.
    pub async fn join(
        &self,
        room: &str,
        kind: ChatRoomKind,
        user_id: i64,
    ) -> Result<bool, StoreError> {
        let added = dispatch!(self.store, pool => {
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
            .await?
            .rows_affected()
        });
        Ok(added > 0)
    }

    /// Moves `user_id`'s read marker in `room` forward to `seq`; false (and nothing written)
    /// when the marker is already there or beyond, or `seq` is past the room's newest message
    /// (or the room does not exist): a marker never moves back nor ahead of the room.
    ///
    /// # Errors
    /// When the database cannot be written.
    pub async fn mark_read(&self, room: &str, user_id: i64, seq: i64) -> Result<bool, StoreError> {
        // The `WHERE` of the `SELECT` also keeps SQLite's parser from reading `ON CONFLICT`
        // as a join constraint.
        let moved = dispatch!(self.store, pool => {
            sqlx::query(
                "INSERT INTO chat_read_markers (room_id, user_id, read_seq) \
                 SELECT id, $2, $3 FROM chat_rooms WHERE id = $1 AND last_seq >= $3 \
                 ON CONFLICT (room_id, user_id) DO UPDATE SET read_seq = excluded.read_seq \
                 WHERE chat_read_markers.read_seq < excluded.read_seq",
            )
            .bind(room)
            .bind(user_id)
            .bind(seq)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(moved > 0)
    }

    /// The support rooms as `agent` sees them, most recently active first (rooms without a
    /// message last), at most `limit`: each with its customer's display name, its newest
    /// message and how many messages others sent above the agent's read marker.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn support_rooms(
        &self,
        agent: i64,
        limit: u32,
    ) -> Result<Vec<SupportRoom>, StoreError> {
        // The customer is the room's own id (`support-<id>`): joined on the text, which needs
        // no column of its own and costs a scan of the (few) support rooms' customers.
        const SQL: &str = "\
            SELECT r.id AS room_id, COALESCE(c.display_name, '') AS customer_name, \
                   (SELECT COUNT(*) FROM chat_messages n \
                    WHERE n.room_id = r.id AND n.seq > COALESCE(k.read_seq, 0) \
                      AND n.sender_id <> $1) AS unread, \
                   m.seq, m.sender_id, m.client_id, m.body, m.created_at, \
                   COALESCE(u.display_name, '') AS sender_name \
            FROM chat_rooms r \
            LEFT JOIN chat_read_markers k ON k.room_id = r.id AND k.user_id = $1 \
            LEFT JOIN users c ON 'support-' || c.id = r.id \
            LEFT JOIN chat_messages m ON m.room_id = r.id AND m.seq = r.last_seq \
            LEFT JOIN users u ON u.id = m.sender_id \
            WHERE r.kind = 'support' \
            ORDER BY (m.created_at IS NULL), m.created_at DESC, r.id \
            LIMIT $2";
        let rows: Vec<SupportRow> = dispatch!(self.store, pool => {
            sqlx::query_as(SQL)
                .bind(agent)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(SupportRoom::from).collect())
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
    /// under `client_id`. `None` when the room does not exist. A batch of one for
    /// [`ChatRepo::post_many`].
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
        let mut posted = self
            .post_many(&[(room, sender_id, client_id, body)])
            .await?;
        Ok(posted.pop().flatten())
    }

    /// Stores a batch of messages in one transaction (group commit), each under its room's
    /// next id in batch order, and answers for each, in order: the new message, the one its
    /// sender stored earlier under the same client id (in the store or earlier in the batch,
    /// marked `duplicate`), or `None` when its room does not exist.
    ///
    /// The rooms' rows are locked first, in id order (so concurrent batches cannot deadlock),
    /// and the duplicate check runs under those locks; only new messages take ids, so ids
    /// stay gap-free, and a room's ids are committed in order.
    ///
    /// # Errors
    /// When the database cannot be written (after a few retries on write conflicts); then
    /// nothing of the batch is stored.
    pub async fn post_many(
        &self,
        posts: &[NewChatMessage<'_>],
    ) -> Result<Vec<Option<Posted>>, StoreError> {
        if posts.is_empty() {
            return Ok(Vec::new());
        }
        retry_on_conflict(
            move || self.try_post_many(posts),
            // A unique violation means a concurrent send of the same client id won: the next
            // attempt finds its message.
            |e: &StoreError| matches!(e, StoreError::Conflict(_)) || e.is_unique_violation(),
        )
        .await
    }

    async fn try_post_many(
        &self,
        posts: &[NewChatMessage<'_>],
    ) -> Result<Vec<Option<Posted>>, StoreError> {
        let now = DbTime::now();
        match &self.store.backend {
            // One statement, so one round trip and its own transaction, whatever the batch's
            // size: lock the batch's rooms in id order, find the messages stored earlier under
            // the same client ids, number the first post of each new client id after its
            // room's `last_seq`, insert those, bump the rooms, and answer each post in order.
            // The duplicate check reads the statement's snapshot, which may predate a
            // concurrent commit of the same client id that this statement then waited for
            // on a room lock: the insert then fails on the unique key, and the retry finds
            // that message. `last_seq` itself is read under the lock, from the newest row.
            Backend::Postgres(pool) => {
                let rows = sqlx::query(POST_MANY_PG)
                    .bind(posts.iter().map(|p| p.0).collect::<Vec<_>>())
                    .bind(posts.iter().map(|p| p.1).collect::<Vec<_>>())
                    .bind(posts.iter().map(|p| p.2).collect::<Vec<_>>())
                    .bind(posts.iter().map(|p| p.3).collect::<Vec<_>>())
                    .bind(now)
                    .fetch_all(pool)
                    .await?;
                let mut answers = Vec::with_capacity(posts.len());
                for row in rows {
                    let Some(room_id) = row.try_get::<Option<String>, _>("room_id")? else {
                        answers.push(None);
                        continue;
                    };
                    let ord: i64 = row.try_get("ord")?;
                    let stored_by: Option<i64> = row.try_get("stored_by")?;
                    answers.push(Some(Posted {
                        message: ChatMessage {
                            room_id,
                            seq: row.try_get("seq")?,
                            sender_id: row.try_get("sender_id")?,
                            sender_name: row.try_get("sender_name")?,
                            client_id: row.try_get("client_id")?,
                            body: row.try_get("body")?,
                            created_at: row.try_get("created_at")?,
                        },
                        duplicate: stored_by != Some(ord),
                    }));
                }
                Ok(answers)
            }
            // SQLite has no arrays to bind, and `BEGIN IMMEDIATE` locks the whole database:
            // a statement per room and per message, all in-process.
            Backend::Sqlite(pool) => {
                let mut rooms: Vec<&str> = posts.iter().map(|p| p.0).collect();
                rooms.sort_unstable();
                rooms.dedup();
                let select_existing = concat!(
                    message_select!(),
                    messages_from!(),
                    " WHERE m.room_id = $1 AND m.sender_id = $2 AND m.client_id = $3"
                );
                let mut tx = pool.begin_with(self.store.dialect().begin_write()).await?;
                let mut locked = HashMap::new();
                for room in &rooms {
                    let last: Option<i64> =
                        sqlx::query_scalar("SELECT last_seq FROM chat_rooms WHERE id = $1")
                            .bind(*room)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if let Some(last) = last {
                        locked.insert((*room).to_owned(), last);
                    }
                }
                let mut existing = Vec::new();
                for (room, sender_id, client_id, _) in posts {
                    let found: Option<ChatMessage> = sqlx::query_as(select_existing)
                        .bind(*room)
                        .bind(*sender_id)
                        .bind(*client_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    existing.extend(found);
                }
                let mut names = HashMap::new();
                for (_, sender_id, _, _) in posts {
                    if names.contains_key(sender_id) {
                        continue;
                    }
                    let name: Option<String> =
                        sqlx::query_scalar("SELECT display_name FROM users WHERE id = $1")
                            .bind(*sender_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    names.insert(*sender_id, name.unwrap_or_default());
                }
                let plan = Plan::new(posts, locked, existing, &names, now.0);
                if plan.fresh.is_empty() {
                    tx.rollback().await?;
                    return Ok(plan.answers);
                }
                for message in &plan.fresh {
                    sqlx::query(concat!(
                        "INSERT INTO chat_messages (",
                        columns!(),
                        ") VALUES ($1, $2, $3, $4, $5, $6)"
                    ))
                    .bind(&message.room_id)
                    .bind(message.seq)
                    .bind(message.sender_id)
                    .bind(&message.client_id)
                    .bind(&message.body)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                for (room, last) in &plan.last_seq {
                    sqlx::query("UPDATE chat_rooms SET last_seq = $2 WHERE id = $1")
                        .bind(room)
                        .bind(*last)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(plan.answers)
            }
        }
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
            message_select!(),
            messages_from!(),
            " WHERE m.room_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3"
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
            message_select!(),
            messages_from!(),
            " WHERE m.room_id = $1 AND m.seq > $2 AND m.seq < $3 ORDER BY m.seq LIMIT $4"
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
