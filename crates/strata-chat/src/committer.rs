//! Group commit: the messages a chat instance's clients send while one transaction is in
//! flight are stored together by the next one, so the store sees one transaction per batch
//! instead of one per message. Each sender is still acknowledged only after the commit that
//! stored its message; then the batch is fanned out to local members and handed to the
//! publisher, which puts it on the bus in commit order: one bus message per batch, or fewer
//! when batches queue behind a slow publish, more when a batch exceeds 256 KiB.

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
    let started = std::time::Instant::now();
    let result = hub.store.chat().post_many(&rows).await;
    hub.metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    #[allow(clippy::cast_precision_loss)] // at most MAX_BATCH
    hub.metrics.commit_batch.observe(batch.len() as f64);
    let answers = match result {
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
/// stops. Batches that queued up while a publish was in flight go out together, so a slow bus
/// sees fewer, larger messages instead of falling further behind.
async fn publish_loop(hub: Arc<Hub>, mut batches: mpsc::Receiver<Vec<ChatMessage>>) {
    let mut waiting = Vec::new();
    while batches.recv_many(&mut waiting, PUBLISH_QUEUE).await > 0 {
        for payload in payloads(waiting.drain(..).flatten(), MAX_PAYLOAD_BYTES) {
            publish(&hub, payload.messages, payload.bytes).await;
        }
    }
}

/// Bytes of one bus message at most, well under NATS' default `max_payload` (1 MiB): a batch of
/// large messages is split over several bus messages.
const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// One bus message: a JSON array of stored messages.
struct Payload {
    messages: usize,
    bytes: Bytes,
}

/// Packs messages, in order, into JSON arrays of at most `max_bytes` each (a single message
/// larger than that goes alone).
fn payloads(messages: impl Iterator<Item = ChatMessage>, max_bytes: usize) -> Vec<Payload> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut count = 0;
    let mut flush = |buf: &mut Vec<u8>, count: &mut usize| {
        if *count > 0 {
            buf.push(b']');
            out.push(Payload {
                messages: *count,
                bytes: Bytes::from(std::mem::take(buf)),
            });
            *count = 0;
        }
    };
    for message in messages {
        let Ok(json) = serde_json::to_vec(&message) else {
            continue;
        };
        // The separator (`[` or `,`) and the closing `]`.
        if count > 0 && buf.len() + json.len() + 2 > max_bytes {
            flush(&mut buf, &mut count);
        }
        buf.push(if count == 0 { b'[' } else { b',' });
        buf.extend_from_slice(&json);
        count += 1;
    }
    flush(&mut buf, &mut count);
    out
}

/// Publishes one bus message of `messages` stored messages. A failure loses no message:
/// members elsewhere get it with their room's next message (gap fill) or when they resume.
async fn publish(hub: &Hub, messages: usize, payload: Bytes) {
    for attempt in 1..=3 {
        let started = std::time::Instant::now();
        let published = hub.bus.publish(BATCH_SUBJECT, payload.clone()).await;
        hub.metrics
            .publish_seconds
            .observe(started.elapsed().as_secs_f64());
        match published {
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(%error, attempt, messages, "cannot publish messages");
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: i64, body: &str) -> ChatMessage {
        ChatMessage {
            room_id: "support-7".to_owned(),
            seq,
            sender_id: 7,
            sender_name: "Ann".to_owned(),
            client_id: format!("c{seq}"),
            body: body.to_owned(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn payloads_keep_order_and_stay_under_the_size_limit() {
        let messages: Vec<ChatMessage> = (1..=40)
            .map(|seq| message(seq, &"x".repeat(usize::try_from(seq).unwrap() * 50)))
            .collect();
        let packed = payloads(messages.clone().into_iter(), 4096);
        assert!(
            packed.len() > 1,
            "40 messages of up to 2 KB fit no 4 KB payload"
        );
        let mut decoded = Vec::new();
        for payload in &packed {
            assert!(payload.bytes.len() <= 4096, "{} bytes", payload.bytes.len());
            let part: Vec<ChatMessage> = serde_json::from_slice(&payload.bytes).unwrap();
            assert_eq!(part.len(), payload.messages);
            decoded.extend(part);
        }
        assert_eq!(decoded, messages);
    }

    #[test]
    fn a_message_over_the_limit_travels_alone_and_nothing_is_empty() {
        let messages = vec![
            message(1, "a"),
            message(2, &"b".repeat(5000)),
            message(3, "c"),
        ];
        let packed = payloads(messages.into_iter(), 1024);
        let counts: Vec<usize> = packed.iter().map(|p| p.messages).collect();
        assert_eq!(counts, [1, 1, 1]);
        assert!(payloads(std::iter::empty(), 1024).is_empty());
    }
}
