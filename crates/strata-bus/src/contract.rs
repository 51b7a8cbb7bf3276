//! The contract every [`Bus`] backend honours, as test functions shared by the backends'
//! integration tests (`tests/memory.rs`, `tests/nats.rs`).
//!
//! Each test gets a fresh bus from a [`Harness`] (for NATS: a namespace of its own, whose
//! streams are deleted afterwards, even when the test fails). [`contract_tests!`](crate::contract_tests)
//! turns the list of tests into `#[tokio::test]` functions. Timings are real (NATS is real):
//! short `ack_wait`s keep the suite within a few seconds, run in parallel.

use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use tokio::time::timeout;

use crate::{
    AnyBus, Bus, BusError, ConsumerInfo, Delivery, MemoryBus, NatsBus, StreamInfo,
    SubscribeOptions, Subscription,
};

/// Longest wait for a message that should come.
const WAIT: Duration = Duration::from_secs(5);

/// A bus for one contract test, and what to clean up after it.
#[derive(Debug)]
pub struct Harness {
    bus: AnyBus,
    /// NATS URL and namespace whose streams to delete afterwards.
    nats: Option<(String, String)>,
}

impl Harness {
    /// A fresh in-memory bus.
    pub fn memory() -> Self {
        Self {
            bus: AnyBus::Memory(MemoryBus::new()),
            nats: None,
        }
    }

    /// A bus on the NATS server at `url`, in `namespace` (unique per test).
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn nats(url: &str, namespace: &str) -> Self {
        let bus = AnyBus::connect(url, namespace)
            .await
            .expect("connect to NATS for a contract test");
        Self {
            bus,
            nats: Some((url.to_owned(), namespace.to_owned())),
        }
    }

    /// Runs `test` on this harness's bus, then cleans up, then re-raises the test's panic.
    pub async fn run<F, Fut>(self, test: F)
    where
        F: FnOnce(AnyBus) -> Fut,
        Fut: Future<Output = ()>,
    {
        let outcome = AssertUnwindSafe(test(self.bus.clone()))
            .catch_unwind()
            .await;
        if let Some((url, namespace)) = &self.nats {
            // A fresh connection: the test may have closed its bus.
            match NatsBus::connect(url, namespace).await {
                Ok(bus) => {
                    if let Err(err) = bus.delete_namespace_streams().await {
                        eprintln!("cleanup of NATS namespace {namespace} failed: {err}");
                    }
                    let _ = bus.close().await;
                }
                Err(err) => eprintln!("cleanup of NATS namespace {namespace} failed: {err}"),
            }
        }
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Generates one `#[tokio::test]` per contract test, each calling `$setup().await` (an
/// `Option<Harness>`: `None` skips) and running the test on the harness.
#[macro_export]
macro_rules! contract_tests {
    ($setup:path) => {
        $crate::contract_tests!(@each $setup;
            publish_returns_increasing_sequences,
            delivers_in_publish_order,
            acked_messages_are_not_redelivered_after_resubscribe,
            unacked_message_is_redelivered_after_ack_wait,
            nack_redelivers,
            resubscribe_resumes_without_loss_or_duplicates,
            shared_durable_splits_messages,
            distinct_durables_each_get_everything,
            max_deliver_stops_redelivery,
            subjects_outside_the_filter_are_not_delivered,
            payload_bytes_are_preserved,
            invalid_arguments_are_rejected,
            durable_with_another_filter_is_rejected,
            close_ends_subscriptions,
            ping_answers,
            stream_info_counts_messages_and_sequences,
            consumer_info_follows_deliveries_acks_and_lag,
            read_returns_stored_messages_by_sequence,
            read_does_not_disturb_durables,
            delete_removes_a_pending_message_for_good,
            delete_of_a_missing_message_is_false,
            inspecting_a_missing_stream_finds_nothing,
        );
    };
    (@each $setup:path; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some(harness) = $setup().await {
                    harness.run($crate::contract::$test).await;
                }
            }
        )+
    };
}

fn opts(ack_wait: Duration) -> SubscribeOptions {
    SubscribeOptions {
        ack_wait,
        ..SubscribeOptions::default()
    }
}

async fn subscribe(
    bus: &AnyBus,
    filter: &str,
    durable: &str,
    opts: SubscribeOptions,
) -> Subscription {
    bus.subscribe(filter, durable, opts)
        .await
        .expect("subscribe")
}

async fn publish(bus: &AnyBus, subject: &str, payload: impl Into<Bytes>) -> u64 {
    bus.publish(subject, payload.into()).await.expect("publish")
}

/// The next delivery, within [`WAIT`].
async fn recv(sub: &mut Subscription) -> Delivery {
    timeout(WAIT, sub.next())
        .await
        .expect("no message within 5 s")
        .expect("subscription ended")
        .expect("delivery failed")
}

/// Asserts nothing is delivered for `quiet`.
async fn assert_quiet(sub: &mut Subscription, quiet: Duration) {
    if let Ok(got) = timeout(quiet, sub.next()).await {
        panic!("expected no delivery for {quiet:?}, got {got:?}");
    }
}

async fn ack(delivery: &Delivery) {
    delivery.ack().await.expect("ack");
}

/// Sequences start at 1 per stream and increase by one per publish.
pub async fn publish_returns_increasing_sequences(bus: AnyBus) {
    let mut seqs = Vec::new();
    for i in 0..10u8 {
        seqs.push(publish(&bus, "orders.placed", vec![i]).await);
    }
    assert_eq!(seqs, (1..=10).collect::<Vec<u64>>());
    assert_eq!(
        publish(&bus, "chat.room.1", "hi").await,
        1,
        "each family has its own stream"
    );
    assert_eq!(publish(&bus, "orders.shipped", "x").await, 11);
}

/// One subscriber gets every message in publish order, first delivery counted as 1.
pub async fn delivers_in_publish_order(bus: AnyBus) {
    let mut sub = subscribe(&bus, "orders.>", "ordered", SubscribeOptions::default()).await;
    let mut published = Vec::new();
    for i in 0..20u32 {
        let subject = if i % 2 == 0 {
            "orders.placed"
        } else {
            "orders.paid"
        };
        let seq = publish(&bus, subject, i.to_be_bytes().to_vec()).await;
        published.push((seq, subject, i));
    }
    for (seq, subject, i) in published {
        let got = recv(&mut sub).await;
        assert_eq!(got.sequence, seq);
        assert_eq!(got.subject, subject);
        assert_eq!(got.payload.as_ref(), i.to_be_bytes());
        assert_eq!(got.delivered, 1);
        ack(&got).await;
    }
}

/// Acked messages stay acked across subscriptions, even past `ack_wait`.
pub async fn acked_messages_are_not_redelivered_after_resubscribe(bus: AnyBus) {
    let short = opts(Duration::from_millis(500));
    let mut sub = subscribe(&bus, "orders.>", "acker", short).await;
    for i in 0..3u8 {
        publish(&bus, "orders.placed", vec![i]).await;
    }
    for expected in 1..=3 {
        let got = recv(&mut sub).await;
        assert_eq!(got.sequence, expected);
        ack(&got).await;
    }
    drop(sub);

    let mut sub = subscribe(&bus, "orders.>", "acker", short).await;
    assert_quiet(&mut sub, Duration::from_millis(900)).await;
    let seq = publish(&bus, "orders.placed", "new").await;
    let got = recv(&mut sub).await;
    assert_eq!((got.sequence, got.delivered), (seq, 1));
    ack(&got).await;
}

/// A message not acked within `ack_wait` comes again, with `delivered` counting up.
pub async fn unacked_message_is_redelivered_after_ack_wait(bus: AnyBus) {
    let ack_wait = Duration::from_millis(800);
    let mut sub = subscribe(&bus, "orders.>", "slow", opts(ack_wait)).await;
    let seq = publish(&bus, "orders.placed", "work").await;
    let first = recv(&mut sub).await;
    let received = Instant::now();
    assert_eq!((first.sequence, first.delivered), (seq, 1));

    let again = recv(&mut sub).await;
    let waited = received.elapsed();
    assert_eq!((again.sequence, again.delivered), (seq, 2));
    assert_eq!(again.payload, first.payload);
    assert!(
        waited >= ack_wait.mul_f32(0.8),
        "redelivered after {waited:?}, before ack_wait"
    );
    ack(&again).await;
    assert_quiet(&mut sub, ack_wait + Duration::from_millis(200)).await;
}

/// A nack gives the message back at once, or after the given delay.
pub async fn nack_redelivers(bus: AnyBus) {
    let mut sub = subscribe(&bus, "orders.>", "nacker", opts(Duration::from_secs(30))).await;
    let seq = publish(&bus, "orders.placed", "retry me").await;

    let first = recv(&mut sub).await;
    first.nack(None).await.expect("nack");
    let second = recv(&mut sub).await;
    assert_eq!((second.sequence, second.delivered), (seq, 2));

    let delay = Duration::from_millis(600);
    let nacked = Instant::now();
    second.nack(Some(delay)).await.expect("nack with delay");
    let third = recv(&mut sub).await;
    let waited = nacked.elapsed();
    assert_eq!((third.sequence, third.delivered), (seq, 3));
    assert!(
        waited >= delay.mul_f32(0.8),
        "redelivered after {waited:?}, before the delay"
    );
    ack(&third).await;
    assert_quiet(&mut sub, Duration::from_millis(300)).await;
}

/// A durable picks up where it left off: nothing acked comes back, nothing is lost. What the
/// first subscription received (or prefetched) without acking comes back after `ack_wait`.
pub async fn resubscribe_resumes_without_loss_or_duplicates(bus: AnyBus) {
    let ack_wait = opts(Duration::from_secs(1));
    for i in 0..10u8 {
        publish(&bus, "orders.placed", vec![i]).await;
    }
    let mut sub = subscribe(&bus, "orders.>", "resumer", ack_wait).await;
    for expected in 1..=5 {
        let got = recv(&mut sub).await;
        assert_eq!(got.sequence, expected);
        ack(&got).await;
    }
    let unacked = recv(&mut sub).await;
    assert_eq!(unacked.sequence, 6);
    drop(sub);

    let mut sub = subscribe(&bus, "orders.>", "resumer", ack_wait).await;
    let mut rest = BTreeSet::new();
    while rest.len() < 5 {
        let got = recv(&mut sub).await;
        assert!(
            got.sequence > 5,
            "acked message {} delivered again",
            got.sequence
        );
        assert!(
            rest.insert(got.sequence),
            "{} delivered twice",
            got.sequence
        );
        ack(&got).await;
    }
    assert_eq!(rest, (6..=10).collect());
    assert_quiet(&mut sub, Duration::from_millis(1200)).await;
}

/// Subscriptions sharing a durable compete: each message goes to one of them.
pub async fn shared_durable_splits_messages(bus: AnyBus) {
    const COUNT: usize = 20;
    let one_at_a_time = SubscribeOptions {
        prefetch: 1,
        ..SubscribeOptions::default()
    };
    let subs = [
        subscribe(&bus, "orders.>", "workers", one_at_a_time).await,
        subscribe(&bus, "orders.>", "workers", one_at_a_time).await,
    ];
    for i in 0..COUNT {
        publish(&bus, "orders.placed", i.to_string()).await;
    }

    let handled = Arc::new(AtomicUsize::new(0));
    let deadline = tokio::time::Instant::now() + WAIT;
    let workers = subs.map(|mut sub| {
        let handled = Arc::clone(&handled);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while handled.load(Ordering::SeqCst) < COUNT && tokio::time::Instant::now() < deadline {
                if let Ok(next) = timeout(Duration::from_millis(100), sub.next()).await {
                    let got = next.expect("subscription ended").expect("delivery failed");
                    // Simulated work, so both workers get a turn.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    got.ack().await.expect("ack");
                    seen.push(got.sequence);
                    handled.fetch_add(1, Ordering::SeqCst);
                }
            }
            seen
        })
    });
    let mut all = Vec::new();
    for worker in workers {
        let seen = worker.await.expect("worker task");
        assert!(!seen.is_empty(), "one worker got nothing: no load sharing");
        all.extend(seen);
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=COUNT as u64).collect::<Vec<_>>(),
        "each message exactly once"
    );
}

/// Different durables each see every message (fan-out).
pub async fn distinct_durables_each_get_everything(bus: AnyBus) {
    let mut a = subscribe(&bus, "chat.>", "instance-a", SubscribeOptions::default()).await;
    let mut b = subscribe(&bus, "chat.>", "instance-b", SubscribeOptions::default()).await;
    for i in 0..10u8 {
        publish(&bus, "chat.room.7", vec![i]).await;
    }
    for sub in [&mut a, &mut b] {
        for expected in 1..=10u64 {
            let got = recv(sub).await;
            assert_eq!(got.sequence, expected);
            ack(&got).await;
        }
        assert_quiet(sub, Duration::from_millis(200)).await;
    }
}

/// After `max_deliver` deliveries a message is dropped for the durable, which moves on.
pub async fn max_deliver_stops_redelivery(bus: AnyBus) {
    let ack_wait = Duration::from_millis(500);
    let twice = SubscribeOptions {
        max_deliver: Some(2),
        ..opts(ack_wait)
    };
    let mut sub = subscribe(&bus, "orders.>", "poison", twice).await;
    let poison = publish(&bus, "orders.placed", "poison").await;
    assert_eq!(recv(&mut sub).await.delivered, 1);
    let second = recv(&mut sub).await;
    assert_eq!((second.sequence, second.delivered), (poison, 2));
    assert_quiet(&mut sub, ack_wait * 2 + Duration::from_millis(300)).await;

    let next = publish(&bus, "orders.placed", "fine").await;
    let got = recv(&mut sub).await;
    assert_eq!((got.sequence, got.delivered), (next, 1));
    ack(&got).await;
}

/// Only subjects matching the filter are delivered (`*` is one token, other families never).
pub async fn subjects_outside_the_filter_are_not_delivered(bus: AnyBus) {
    let mut rooms = subscribe(&bus, "chat.room.*", "rooms", SubscribeOptions::default()).await;
    let mut one = subscribe(&bus, "chat.room.1", "room-one", SubscribeOptions::default()).await;
    let r1 = publish(&bus, "chat.room.1", "a").await;
    publish(&bus, "chat.dm.1", "b").await;
    let r2 = publish(&bus, "chat.room.2", "c").await;
    publish(&bus, "chat.room.1.thread", "d").await;
    publish(&bus, "orders.placed", "e").await;
    let r1_again = publish(&bus, "chat.room.1", "f").await;

    for (seq, subject) in [
        (r1, "chat.room.1"),
        (r2, "chat.room.2"),
        (r1_again, "chat.room.1"),
    ] {
        let got = recv(&mut rooms).await;
        assert_eq!((got.sequence, got.subject.as_str()), (seq, subject));
        ack(&got).await;
    }
    for seq in [r1, r1_again] {
        let got = recv(&mut one).await;
        assert_eq!((got.sequence, got.subject.as_str()), (seq, "chat.room.1"));
        ack(&got).await;
    }
    assert_quiet(&mut rooms, Duration::from_millis(300)).await;
    assert_quiet(&mut one, Duration::from_millis(100)).await;
}

/// Payloads come back byte for byte: binary, empty, and large (512 KiB).
pub async fn payload_bytes_are_preserved(bus: AnyBus) {
    let payloads = [
        (0..=255u8).collect::<Vec<u8>>(),
        Vec::new(),
        (0..512 * 1024).map(|i| (i * 31 % 251) as u8).collect(),
    ];
    let mut sub = subscribe(&bus, "orders.>", "bytes", SubscribeOptions::default()).await;
    for payload in &payloads {
        publish(&bus, "orders.blob", payload.clone()).await;
    }
    for payload in &payloads {
        let got = recv(&mut sub).await;
        assert_eq!(got.payload.len(), payload.len());
        assert!(
            got.payload.as_ref() == payload.as_slice(),
            "payload changed"
        );
        ack(&got).await;
    }
}

/// Malformed subjects, names and options are refused before anything is stored.
pub async fn invalid_arguments_are_rejected(bus: AnyBus) {
    for subject in [
        "orders",
        "orders.*",
        "orders.>",
        "orders..x",
        "Orders.x",
        "",
        "a b.c",
    ] {
        let err = bus.publish(subject, Bytes::new()).await.expect_err(subject);
        assert!(
            matches!(err, BusError::InvalidSubject { .. }),
            "{subject}: {err}"
        );
    }
    let default = SubscribeOptions::default();
    for filter in ["orders", ">", "*.x", "orders.>.x"] {
        let err = bus.subscribe(filter, "d", default).await.expect_err(filter);
        assert!(
            matches!(err, BusError::InvalidSubject { .. }),
            "{filter}: {err}"
        );
    }
    for durable in ["", "a.b", "a*", "a b"] {
        let err = bus
            .subscribe("orders.>", durable, default)
            .await
            .expect_err(durable);
        assert!(
            matches!(err, BusError::InvalidName { .. }),
            "{durable}: {err}"
        );
    }
    let never = SubscribeOptions {
        max_deliver: Some(0),
        ..default
    };
    let err = bus
        .subscribe("orders.>", "d", never)
        .await
        .expect_err("max_deliver 0");
    assert!(matches!(err, BusError::InvalidOptions(_)), "{err}");
}

/// A durable keeps its filter; asking for another one is an error, the same one is fine.
pub async fn durable_with_another_filter_is_rejected(bus: AnyBus) {
    let first = subscribe(&bus, "orders.placed", "fixed", SubscribeOptions::default()).await;
    let err = bus
        .subscribe("orders.shipped", "fixed", SubscribeOptions::default())
        .await
        .expect_err("filter changed");
    match err {
        BusError::DurableConflict {
            existing,
            requested,
            ..
        } => assert_eq!(
            (existing.as_str(), requested.as_str()),
            ("orders.placed", "orders.shipped")
        ),
        other => panic!("expected DurableConflict, got {other}"),
    }
    drop(first);
    subscribe(&bus, "orders.placed", "fixed", SubscribeOptions::default()).await;
}

/// Closing the bus ends waiting subscriptions and refuses new work.
pub async fn close_ends_subscriptions(bus: AnyBus) {
    let mut sub = subscribe(&bus, "orders.>", "closing", SubscribeOptions::default()).await;
    let waiting = tokio::spawn(async move { sub.next().await.map(|r| r.map(|d| d.sequence)) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    bus.close().await.expect("close");
    let ended = timeout(WAIT, waiting)
        .await
        .expect("subscription still waiting 5 s after close")
        .expect("subscription task");
    assert!(
        ended.is_none(),
        "expected the end of the subscription, got {ended:?}"
    );
    assert!(bus.publish("orders.placed", Bytes::new()).await.is_err());
}

/// A healthy bus answers its readiness check.
pub async fn ping_answers(bus: AnyBus) {
    bus.ping().await.expect("ping");
}

async fn stream_info(bus: &AnyBus, family: &str) -> Option<StreamInfo> {
    bus.stream_info(family).await.expect("stream info")
}

async fn consumer_info(bus: &AnyBus, durable: &str) -> ConsumerInfo {
    bus.consumer_info("orders", durable)
        .await
        .expect("consumer info")
        .unwrap_or_else(|| panic!("durable {durable} not found"))
}

async fn sequences_read(bus: &AnyBus, from_seq: u64, limit: usize) -> Vec<u64> {
    bus.read("orders", from_seq, limit)
        .await
        .expect("read")
        .iter()
        .map(|m| m.sequence)
        .collect()
}

async fn delete(bus: &AnyBus, sequence: u64) -> bool {
    bus.delete("orders", sequence).await.expect("delete")
}

/// `(ack_pending, num_pending, redelivered, delivered_seq)`, the counts a test can predict.
fn counts(info: &ConsumerInfo) -> (u64, u64, u64, u64) {
    (
        info.ack_pending,
        info.num_pending,
        info.redelivered,
        info.delivered_seq,
    )
}

/// Options whose `max_ack_pending` caps what the backend may hand out, so NATS's prefetch
/// cannot make the server's counts run ahead of what the test received.
fn capped(max_ack_pending: u32) -> SubscribeOptions {
    SubscribeOptions {
        max_ack_pending,
        prefetch: 1,
        ..opts(Duration::from_secs(30))
    }
}

/// A stream reports what it stores now and what was ever published.
pub async fn stream_info_counts_messages_and_sequences(bus: AnyBus) {
    assert_eq!(
        stream_info(&bus, "orders").await,
        None,
        "before any publish"
    );
    for i in 0..3u8 {
        publish(&bus, "orders.placed", vec![i; 10]).await;
    }
    let full = stream_info(&bus, "orders").await.expect("stream exists");
    assert_eq!(
        (
            full.family.as_str(),
            full.messages,
            full.first_seq,
            full.last_seq
        ),
        ("orders", 3, 1, 3)
    );
    assert!(
        full.bytes >= 30,
        "3 payloads of 10 bytes in {} bytes",
        full.bytes
    );

    assert!(delete(&bus, 1).await);
    let info = stream_info(&bus, "orders").await.expect("stream exists");
    assert_eq!(
        (info.messages, info.first_seq, info.last_seq),
        (2, 2, 3),
        "the first message deleted"
    );
    assert!(
        info.bytes < full.bytes,
        "{} not below {}",
        info.bytes,
        full.bytes
    );

    assert!(delete(&bus, 3).await);
    let info = stream_info(&bus, "orders").await.expect("stream exists");
    assert_eq!(
        (info.messages, info.first_seq, info.last_seq),
        (1, 2, 3),
        "last_seq counts what was published, deleted or not"
    );
    assert!(delete(&bus, 2).await);
    let info = stream_info(&bus, "orders").await.expect("stream exists");
    assert_eq!(
        (info.messages, info.first_seq, info.last_seq, info.bytes),
        (0, 4, 3, 0),
        "emptied"
    );

    assert_eq!(publish(&bus, "orders.placed", "again").await, 4);
    let info = stream_info(&bus, "orders").await.expect("stream exists");
    assert_eq!((info.messages, info.first_seq, info.last_seq), (1, 4, 4));
    assert_eq!(
        stream_info(&bus, "chat").await,
        None,
        "other families untouched"
    );
}

/// A durable's counts move with deliveries, acks and redeliveries; its lag counts only the
/// subjects its filter matches.
pub async fn consumer_info_follows_deliveries_acks_and_lag(bus: AnyBus) {
    // Published before the durables exist: the memory bus then keeps everything, like NATS.
    for subject in [
        "orders.placed",
        "orders.shipped",
        "orders.placed",
        "orders.shipped",
        "orders.placed",
    ] {
        publish(&bus, subject, "x").await;
    }
    let mut all = subscribe(&bus, "orders.>", "all", capped(2)).await;
    let mut placed = subscribe(&bus, "orders.placed", "placed", capped(1)).await;

    let first = recv(&mut all).await;
    let second = recv(&mut all).await;
    assert_eq!((first.sequence, second.sequence), (1, 2));
    let info = consumer_info(&bus, "all").await;
    assert_eq!(
        (info.durable.as_str(), info.filter.as_str()),
        ("all", "orders.>")
    );
    assert_eq!(
        counts(&info),
        (2, 3, 0, 2),
        "two delivered, unacked; three to go"
    );

    let placed_first = recv(&mut placed).await;
    assert_eq!(placed_first.sequence, 1);
    let info = consumer_info(&bus, "placed").await;
    assert_eq!(info.filter, "orders.placed");
    assert_eq!(
        counts(&info),
        (1, 2, 0, 1),
        "the lag counts only orders.placed (3 and 5)"
    );

    ack(&first).await;
    ack(&second).await;
    let third = recv(&mut all).await;
    let fourth = recv(&mut all).await;
    assert_eq!((third.sequence, fourth.sequence), (3, 4));
    assert_eq!(counts(&consumer_info(&bus, "all").await), (2, 1, 0, 4));

    third.nack(None).await.expect("nack");
    let again = recv(&mut all).await;
    assert_eq!((again.sequence, again.delivered), (3, 2));
    assert_eq!(
        counts(&consumer_info(&bus, "all").await),
        (2, 1, 1, 4),
        "one of the two pending was redelivered"
    );

    ack(&again).await;
    ack(&fourth).await;
    let fifth = recv(&mut all).await;
    assert_eq!(fifth.sequence, 5);
    ack(&fifth).await;
    assert_eq!(counts(&consumer_info(&bus, "all").await), (0, 0, 0, 5));

    ack(&placed_first).await;
    for expected in [3, 5] {
        let got = recv(&mut placed).await;
        assert_eq!(got.sequence, expected);
        ack(&got).await;
    }
    // A subject the filter skips is lag for `all` only.
    publish(&bus, "orders.shipped", "x").await;
    let info = consumer_info(&bus, "placed").await;
    assert_eq!((info.ack_pending, info.num_pending), (0, 0));
    assert!(
        info.delivered_seq >= 5,
        "delivered_seq {}",
        info.delivered_seq
    );
    let info = consumer_info(&bus, "all").await;
    // NATS may already have handed 6 to the waiting subscription.
    assert_eq!(info.num_pending + info.ack_pending, 1, "{info:?}");

    let listed = bus.consumers("orders").await.expect("consumers");
    let names: Vec<&str> = listed.iter().map(|c| c.durable.as_str()).collect();
    assert_eq!(names, ["all", "placed"]);
    assert_eq!(listed[1], consumer_info(&bus, "placed").await);
    assert_eq!(
        bus.consumer_info("orders", "nobody")
            .await
            .expect("consumer info"),
        None
    );
}

/// `read` returns stored messages from a sequence on, in order, within the limit, without
/// the deleted ones.
pub async fn read_returns_stored_messages_by_sequence(bus: AnyBus) {
    for i in 0..10u8 {
        let subject = if i % 2 == 0 {
            "orders.placed"
        } else {
            "orders.paid"
        };
        publish(&bus, subject, vec![i]).await;
    }
    let all = bus.read("orders", 1, 100).await.expect("read");
    assert_eq!(all.len(), 10);
    for (i, message) in all.iter().enumerate() {
        let expected = if i % 2 == 0 {
            "orders.placed"
        } else {
            "orders.paid"
        };
        assert_eq!(message.sequence, i as u64 + 1);
        assert_eq!(message.subject, expected);
        assert_eq!(message.payload.as_ref(), [i as u8]);
    }
    assert_eq!(bus.read("orders", 0, 100).await.expect("read"), all);
    assert_eq!(sequences_read(&bus, 4, 3).await, [4, 5, 6]);
    assert_eq!(sequences_read(&bus, 9, 10).await, [9, 10]);
    assert_eq!(sequences_read(&bus, 11, 5).await, Vec::<u64>::new());
    assert_eq!(sequences_read(&bus, 3, 0).await, Vec::<u64>::new());

    assert!(delete(&bus, 5).await);
    assert!(delete(&bus, 6).await);
    assert_eq!(sequences_read(&bus, 4, 3).await, [4, 7, 8]);
    assert_eq!(sequences_read(&bus, 5, 1).await, [7]);

    // Long reads span several pulls on NATS.
    for i in 0..150u32 {
        publish(&bus, "orders.placed", i.to_be_bytes().to_vec()).await;
    }
    let long = sequences_read(&bus, 1, 1000).await;
    let expected: Vec<u64> = (1..=160).filter(|seq| *seq != 5 && *seq != 6).collect();
    assert_eq!(long, expected);
    assert_eq!(
        sequences_read(&bus, 100, 70).await,
        (100..=160).collect::<Vec<_>>()
    );
    assert_eq!(sequences_read(&bus, 2, 130).await.len(), 130);
}

/// Reading delivers nothing to any durable and leaves no consumer behind.
pub async fn read_does_not_disturb_durables(bus: AnyBus) {
    let mut sub = subscribe(&bus, "orders.>", "watcher", capped(1)).await;
    for i in 0..5u8 {
        publish(&bus, "orders.placed", vec![i]).await;
    }
    let held = recv(&mut sub).await;
    assert_eq!(held.sequence, 1);
    let before = consumer_info(&bus, "watcher").await;
    assert_eq!(counts(&before), (1, 4, 0, 1));

    assert_eq!(sequences_read(&bus, 1, 100).await, [1, 2, 3, 4, 5]);
    assert_eq!(sequences_read(&bus, 3, 1).await, [3]);

    assert_eq!(consumer_info(&bus, "watcher").await, before);
    let listed = bus.consumers("orders").await.expect("consumers");
    assert_eq!(listed, [before], "only the durable is listed");
    ack(&held).await;
    let next = recv(&mut sub).await;
    assert_eq!((next.sequence, next.delivered), (2, 1));
    ack(&next).await;
}

/// A deleted message that a durable holds unacked is never redelivered, and the durable
/// carries on with the rest.
pub async fn delete_removes_a_pending_message_for_good(bus: AnyBus) {
    let ack_wait = Duration::from_millis(500);
    let one_at_a_time = SubscribeOptions {
        max_ack_pending: 1,
        prefetch: 1,
        ..opts(ack_wait)
    };
    let mut sub = subscribe(&bus, "orders.>", "deleter", one_at_a_time).await;
    for i in 1..=3u8 {
        publish(&bus, "orders.placed", vec![i]).await;
    }
    let doomed = recv(&mut sub).await;
    assert_eq!(doomed.sequence, 1);
    assert!(
        delete(&bus, 1).await,
        "a pending message is there to delete"
    );
    assert!(!delete(&bus, 1).await, "deleted twice");
    assert_eq!(sequences_read(&bus, 1, 10).await, [2, 3]);

    for expected in [2, 3] {
        let got = recv(&mut sub).await;
        assert_eq!(
            (got.sequence, got.delivered),
            (expected, 1),
            "the deleted message came back"
        );
        ack(&got).await;
    }
    assert_quiet(&mut sub, ack_wait * 2 + Duration::from_millis(200)).await;
    assert_eq!(counts(&consumer_info(&bus, "deleter").await), (0, 0, 0, 3));

    // A durable created afterwards never sees it either.
    let mut late = subscribe(&bus, "orders.>", "late", SubscribeOptions::default()).await;
    let seq = publish(&bus, "orders.placed", "after").await;
    let got = recv(&mut late).await;
    assert_ne!(got.sequence, 1);
    ack(&got).await;
    // NATS replays 2 and 3 to the new durable; memory trimmed them once `deleter` acked.
    while let Ok(Some(Ok(got))) = timeout(Duration::from_millis(300), late.next()).await {
        assert!(got.sequence > 1 && got.sequence <= seq, "{}", got.sequence);
        ack(&got).await;
    }
}

/// Deleting what is not there answers `false`, and changes nothing.
pub async fn delete_of_a_missing_message_is_false(bus: AnyBus) {
    assert!(!delete(&bus, 1).await, "no stream yet");
    publish(&bus, "orders.placed", "a").await;
    publish(&bus, "orders.placed", "b").await;
    for missing in [0, 3, 1000] {
        assert!(!delete(&bus, missing).await, "sequence {missing}");
    }
    assert!(delete(&bus, 1).await);
    assert!(!delete(&bus, 1).await, "already deleted");
    let info = stream_info(&bus, "orders").await.expect("stream exists");
    assert_eq!((info.messages, info.first_seq, info.last_seq), (1, 2, 2));
    assert!(
        !bus.delete("chat", 1).await.expect("delete"),
        "another family"
    );
}

/// Inspecting a family that has no stream finds nothing and creates nothing; bad families
/// and durable names are refused.
pub async fn inspecting_a_missing_stream_finds_nothing(bus: AnyBus) {
    assert_eq!(stream_info(&bus, "orders").await, None);
    assert_eq!(
        bus.consumer_info("orders", "any")
            .await
            .expect("consumer info"),
        None
    );
    assert!(bus.consumers("orders").await.expect("consumers").is_empty());
    assert!(bus.read("orders", 1, 10).await.expect("read").is_empty());
    assert!(!delete(&bus, 1).await);
    assert_eq!(
        stream_info(&bus, "orders").await,
        None,
        "looking created the stream"
    );

    publish(&bus, "orders.placed", "x").await;
    assert!(bus.consumers("orders").await.expect("consumers").is_empty());
    assert_eq!(
        bus.consumer_info("orders", "nobody")
            .await
            .expect("consumer info"),
        None
    );

    for family in ["", "Orders", "orders.placed", "a*", "a b"] {
        let refused = |result: Result<(), BusError>| {
            assert!(
                matches!(result, Err(BusError::InvalidSubject { .. })),
                "{family:?}: {result:?}"
            );
        };
        refused(bus.stream_info(family).await.map(drop));
        refused(bus.consumer_info(family, "d").await.map(drop));
        refused(bus.consumers(family).await.map(drop));
        refused(bus.read(family, 1, 1).await.map(drop));
        refused(bus.delete(family, 1).await.map(drop));
    }
    let err = bus
        .consumer_info("orders", "a.b")
        .await
        .expect_err("bad durable name");
    assert!(matches!(err, BusError::InvalidName { .. }), "{err}");
}
