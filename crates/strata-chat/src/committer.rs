//! Group commit: the messages a chat instance's clients send while one transaction is in
//! flight are stored together by the next one, so the store sees one transaction per batch
//! instead of one per message. Each sender is still acknowledged only after the commit that
//! stored its message; then the batch is fanned out to local members and handed to the
//! publisher, which puts it on the bus as one bus message, in commit order.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_bus::Bus;
use strata_store::ChatMessage;
use tokio::sync::mpsc;

use crate::hub::{Hub, Member, Out};
use crate::protocol::ServerFrame;
use crate::room::RoomId;

/// Most messages stored by one transaction: bounds the statement's size and the wait of the
/// batch's first sender.
const MAX_BATCH: usize = 256;
/// Messages waiting for a transaction, across the instance. A full queue makes senders wait
/// (their reader stops reading, and TCP pushes back on the client) rather than buffer.
pub(crate) const QUEUE: usize = 4096;
/// Committed batches waiting to be published.
const PUBLISH_QUEUE: usize = 1024;
/// The subject batches of stored messages travel on: every instance subscribes to `chat.>`.
pub(crate) const BATCH_SUBJECT: &str = "chat.messages";

/// A message a client sent, validated, on its way to the store.
pub(crate) struct Post {
    pub room: RoomId,
    pub sender: i64,
    pub client_id: String,
    pub body: String,
    /// The sending connection, which gets the `ack` (or the error) once the batch commits.
    pub member: Member,
}

/// Stores queued posts batch by batch until the queue closes (every sender gone) or the
/// instance is killed.
pub(crate) async fn commit_loop(hub: Arc<Hub>, mut posts: mpsc::Receiver<Post>) {
    let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
    let publisher = tokio::spawn(publish_loop(hub.clone(), publish_rx));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = tokio::select! {
            () = hub.killed.cancelled() => 0,
            n = posts.recv_many(&mut batch, MAX_BATCH) => n,
        };
        if received == 0 {
            break;
        }
        let stored = tokio::select! {
            () = hub.killed.cancelled() => break,
            stored = commit(&hub, &batch) => stored,
        };
        batch.clear();
        if !stored.is_empty() && publish_tx.send(stored).await.is_err() {
            break;
        }
    }
    drop(publish_tx);
    let _ = publisher.await;
}

/// Stores one batch, answers every sender and fans the new messages out locally; returns
/// them for the bus.
async fn commit(hub: &Hub, batch: &[Post]) -> Vec<ChatMessage> {
    let rows: Vec<_> = batch
        .iter()
        .map(|p| {
            (
                p.room.as_str(),
                p.sender,
                p.client_id.as_str(),
                p.body.as_str(),
            )
        })
        .collect();
    let answers = match hub.store.chat().post_many(&rows).await {
        Ok(answers) => answers,
        Err(error) => {
            tracing::warn!(%error, messages = batch.len(), "cannot store messages");
            for post in batch {
                reply(
                    hub,
                    post,
                    &ServerFrame::Error {
                        code: "unavailable".to_owned(),
                        message: "not stored: send again with the same client_id".to_owned(),
                        client_id: Some(post.client_id.clone()),
                    },
                );
            }
            return Vec::new();
        }
    };
    let mut stored = Vec::new();
    for (post, answer) in batch.iter().zip(answers) {
        let Some(posted) = answer else {
            reply(
                hub,
                post,
                &ServerFrame::Error {
                    code: "unknown_room".to_owned(),
                    message: "the room does not exist".to_owned(),
                    client_id: Some(post.client_id.clone()),
                },
            );
            continue;
        };
        // The ack goes into the sender's queue before the message itself does, as when each
        // message had its own transaction.
        reply(
            hub,
            post,
            &ServerFrame::Ack {
                room: post.room.to_string(),
                client_id: post.client_id.clone(),
                id: posted.message.seq,
                duplicate: posted.duplicate,
            },
        );
        if !posted.duplicate {
            stored.push(posted.message);
        }
    }
    hub.metrics.messages_stored.inc_by(stored.len() as u64);
    // Batch order is id order within each room.
    hub.fan_out_many(&stored);
    stored
}

fn reply(hub: &Hub, post: &Post, frame: &ServerFrame) {
    post.member
        .offer(Out::Text(frame.to_json().into()), &hub.metrics);
}

/// Publishes committed batches for the other instances, in commit order, until the committer
/// stops.
async fn publish_loop(hub: Arc<Hub>, mut batches: mpsc::Receiver<Vec<ChatMessage>>) {
    while let Some(batch) = batches.recv().await {
        publish(&hub, &batch).await;
    }
}

/// Publishes one batch. A failure loses no message: members elsewhere get it with their
/// room's next message (gap fill) or when they resume.
async fn publish(hub: &Hub, batch: &[ChatMessage]) {
    let payload = match serde_json::to_vec(batch) {
        Ok(payload) => Bytes::from(payload),
        Err(_) => return,
    };
    for attempt in 1..=3 {
        match hub.bus.publish(BATCH_SUBJECT, payload.clone()).await {
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(%error, attempt, messages = batch.len(), "cannot publish messages");
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
        }
    }
}
