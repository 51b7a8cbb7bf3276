//! The instance's background tasks: the bus subscription that brings other instances'
//! messages (batches of them, see [`crate::committer`]), typing notices and new members of
//! rooms, and the presence loop (refresh our users' entries, watch our rooms' members).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use strata_bus::{Bus, SubscribeOptions};
use strata_cache::Cache;
use strata_store::ChatMessage;

use crate::committer::BATCH_SUBJECT;
use crate::hub::{Hub, presence_key};
use crate::protocol::ServerFrame;
use crate::room::RoomId;

/// A durable name from an instance name: NATS accepts letters, digits, `_` and `-`.
pub(crate) fn durable_name(instance: &str) -> String {
    let name: String = instance
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("chat-fanout-{name}")
}

/// The subject prefix of "this room has a new member" notices (the room follows).
pub(crate) const MEMBER_SUBJECT: &str = "chat.member.";

/// A user's first connection to an instance, or their last one there ending: every instance
/// tells the connections that watch the support rooms (see `Hub::tell_desk_presence`).
pub(crate) const DESK_PRESENCE_SUBJECT: &str = "chat.desk.presence";

#[derive(serde::Serialize, Deserialize)]
pub(crate) struct DeskPresence {
    pub user: i64,
    pub online: bool,
}

/// A "new member" notice: only the room matters (the roster is re-read from the store).
#[derive(Deserialize)]
struct MemberNotice {
    room: String,
}

#[derive(Deserialize)]
struct TypingRelay {
    room: String,
    user: i64,
    instance: String,
}

/// Delivers what other instances publish to this instance's members, until stopped.
pub(crate) async fn bus_loop(hub: Arc<Hub>) {
    let durable = durable_name(&hub.instance);
    let opts = SubscribeOptions {
        // A message is acked right after the (non-blocking) fan-out; a long wait only matters
        // if this instance dies mid-batch, and then nobody here needs the message.
        ack_wait: Duration::from_secs(10),
        max_deliver: Some(3),
        max_ack_pending: 10_000,
        prefetch: 256,
    };
    loop {
        let subscription = tokio::select! {
            () = hub.killed.cancelled() => return,
            sub = hub.bus.subscribe("chat.>", &durable, opts) => sub,
        };
        let mut subscription = match subscription {
            Ok(sub) => sub,
            Err(error) => {
                tracing::warn!(%error, "cannot subscribe to chat fan-out; retrying");
                tokio::select! {
                    () = hub.killed.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let next = tokio::select! {
                () = hub.killed.cancelled() => return,
                next = subscription.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    handle(&hub, &delivery.subject, &delivery.payload);
                    if let Err(error) = delivery.ack().await {
                        tracing::debug!(%error, "cannot ack a fan-out message");
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "chat fan-out subscription failed; resubscribing");
                    break;
                }
                None => return,
            }
        }
    }
}

fn handle(hub: &Hub, subject: &str, payload: &Bytes) {
    if subject == BATCH_SUBJECT {
        match serde_json::from_slice::<Vec<ChatMessage>>(payload) {
            Ok(batch) => hub.fan_out_many(&batch),
            Err(error) => tracing::warn!(%error, subject, "bad chat messages on the bus"),
        }
    } else if subject.starts_with("chat.room.") {
        // One message per bus message, as instances published before group commit: kept so
        // that a rolling upgrade delivers both ways.
        match serde_json::from_slice::<ChatMessage>(payload) {
            Ok(message) => hub.fan_out_many(std::slice::from_ref(&message)),
            Err(error) => tracing::warn!(%error, subject, "bad chat message on the bus"),
        }
    } else if subject == DESK_PRESENCE_SUBJECT {
        if let Ok(notice) = serde_json::from_slice::<DeskPresence>(payload) {
            hub.tell_desk_presence(notice.user, notice.online);
        }
    } else if subject.starts_with(MEMBER_SUBJECT) {
        if let Ok(notice) = serde_json::from_slice::<MemberNotice>(payload)
            && let Ok(room) = notice.room.parse::<RoomId>()
        {
            hub.roster_changed(&room);
        }
    } else if subject.starts_with("chat.typing.")
        && let Ok(relay) = serde_json::from_slice::<TypingRelay>(payload)
        && relay.instance != *hub.instance
        && let Ok(room) = relay.room.parse::<RoomId>()
    {
        let frame = ServerFrame::Typing {
            room: room.to_string(),
            user: relay.user,
        };
        hub.broadcast(&room, &frame, None);
    }
}

/// Presence entries per cache call (one Redis round trip each): a few thousand users cost a
/// handful of round trips per tick rather than one each, and each answer stays small.
const PRESENCE_CHUNK: usize = 1000;

/// Every half heartbeat: refreshes the presence entries of this instance's users (every
/// heartbeat), re-reads stale room rosters, reads the presence of every user watched here
/// and tells local members about changes.
pub(crate) async fn presence_loop(hub: Arc<Hub>) {
    let half = hub.limits.heartbeat / 2;
    let mut tick = tokio::time::interval(half.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refresh = true;
    loop {
        tokio::select! {
            () = hub.killed.cancelled() => return,
            _ = tick.tick() => {}
        }
        if refresh {
            refresh_presence(&hub).await;
        }
        refresh = !refresh;
        for room in hub.stale_rosters(hub.limits.heartbeat * 10) {
            if let Ok(roster) = hub.store.chat().members(room.as_str()).await {
                hub.set_roster(&room, roster);
            }
        }
        hub.announce_presence(&watched_presence(&hub).await);
    }
}

/// Renews the presence entry of every user connected here.
async fn refresh_presence(hub: &Hub) {
    let ttl = hub.presence_ttl();
    for users in hub.local_users().chunks(PRESENCE_CHUNK) {
        let keys: Vec<String> = users.iter().map(|&user| presence_key(user)).collect();
        let entries: Vec<(&str, Bytes)> = keys
            .iter()
            .map(|key| (key.as_str(), Bytes::from_static(b"1")))
            .collect();
        if let Err(error) = hub.cache.set_many(&entries, ttl).await {
            tracing::warn!(%error, users = users.len(), "cannot record presence");
        }
    }
}

/// Whether each watched user is online: connected here, or with a live presence entry. A user
/// whose entry cannot be read (the cache failing) is left out, so their last known state
/// stands until the next tick.
async fn watched_presence(hub: &Hub) -> HashMap<i64, bool> {
    let mut status = HashMap::new();
    let mut remote = Vec::new();
    for user in hub.watched_users() {
        if hub.is_local(user) {
            status.insert(user, true);
        } else {
            remote.push(user);
        }
    }
    for users in remote.chunks(PRESENCE_CHUNK) {
        let keys: Vec<String> = users.iter().map(|&user| presence_key(user)).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        match hub.cache.get_many(&keys).await {
            Ok(values) => {
                status.extend(users.iter().zip(values).map(|(&u, v)| (u, v.is_some())));
            }
            Err(error) => {
                tracing::warn!(%error, users = users.len(), "cannot read presence");
            }
        }
    }
    status
}
