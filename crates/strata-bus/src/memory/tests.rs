//! Unit tests of the in-memory bus.

use super::*;

fn opts(ack_wait_ms: u64) -> SubscribeOptions {
    SubscribeOptions {
        ack_wait: Duration::from_millis(ack_wait_ms),
        ..SubscribeOptions::default()
    }
}

fn retained(bus: &MemoryBus, family: &str) -> Vec<u64> {
    let cell = bus.stream(family);
    let state = lock(&cell.state);
    state.log.iter().map(|m| m.seq).collect()
}

#[tokio::test(start_paused = true)]
async fn redelivery_waits_exactly_ack_wait() {
    let bus = MemoryBus::new();
    let mut sub = bus.subscribe("orders.>", "w", opts(1000)).await.unwrap();
    bus.publish("orders.placed", Bytes::from_static(b"x"))
        .await
        .unwrap();
    let first = sub.next().await.unwrap().unwrap();
    let start = Instant::now();
    let again = sub.next().await.unwrap().unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(1000));
    assert_eq!((again.sequence, again.delivered), (first.sequence, 2));
}

#[tokio::test]
async fn messages_every_durable_acked_are_trimmed() {
    let bus = MemoryBus::new();
    let mut a = bus.subscribe("orders.>", "a", opts(30_000)).await.unwrap();
    let mut b = bus
        .subscribe("orders.placed", "b", opts(30_000))
        .await
        .unwrap();
    for _ in 0..3 {
        bus.publish("orders.placed", Bytes::new()).await.unwrap();
    }
    bus.publish("orders.shipped", Bytes::new()).await.unwrap();
    assert_eq!(retained(&bus, "orders"), vec![1, 2, 3, 4]);

    for _ in 0..4 {
        a.next().await.unwrap().unwrap().ack().await.unwrap();
    }
    // b still needs 1..=3; it filters 4 out but has not looked that far yet.
    assert_eq!(retained(&bus, "orders"), vec![1, 2, 3, 4]);
    let first_of_b = b.next().await.unwrap().unwrap();
    b.next().await.unwrap().unwrap().ack().await.unwrap();
    // 1 is unacked by b, so nothing can go.
    assert_eq!(retained(&bus, "orders"), vec![1, 2, 3, 4]);
    first_of_b.ack().await.unwrap();
    assert_eq!(retained(&bus, "orders"), vec![3, 4]);
    // b skips 4, which it filters out, without having to ask for it.
    b.next().await.unwrap().unwrap().ack().await.unwrap();
    assert_eq!(retained(&bus, "orders"), Vec::<u64>::new());
    bus.publish("orders.shipped", Bytes::new()).await.unwrap();
    assert_eq!(retained(&bus, "orders"), vec![5]);
    a.next().await.unwrap().unwrap().ack().await.unwrap();
    assert_eq!(retained(&bus, "orders"), Vec::<u64>::new());
}

#[tokio::test]
async fn streams_without_durables_keep_everything_up_to_the_limits() {
    let bus = MemoryBus::with_limits(StreamLimits {
        max_messages: 3,
        max_bytes: 1 << 20,
    });
    for _ in 0..5 {
        bus.publish("chat.room.1", Bytes::new()).await.unwrap();
    }
    assert_eq!(retained(&bus, "chat"), vec![3, 4, 5]);
    // A new durable starts at the oldest retained message.
    let mut sub = bus.subscribe("chat.>", "c", opts(30_000)).await.unwrap();
    assert_eq!(sub.next().await.unwrap().unwrap().sequence, 3);
}

#[tokio::test]
async fn byte_limit_drops_oldest_but_keeps_the_newest() {
    let bus = MemoryBus::with_limits(StreamLimits {
        max_messages: 100,
        max_bytes: 100,
    });
    bus.publish("a.b", Bytes::from(vec![0; 60])).await.unwrap();
    bus.publish("a.b", Bytes::from(vec![0; 60])).await.unwrap();
    assert_eq!(retained(&bus, "a"), vec![2]);
    bus.publish("a.b", Bytes::from(vec![0; 500])).await.unwrap();
    assert_eq!(retained(&bus, "a"), vec![3]);
}

#[tokio::test(start_paused = true)]
async fn unacked_message_lost_to_limits_is_not_redelivered() {
    let bus = MemoryBus::with_limits(StreamLimits {
        max_messages: 1,
        max_bytes: 1 << 20,
    });
    let mut sub = bus.subscribe("a.>", "d", opts(100)).await.unwrap();
    bus.publish("a.b", Bytes::new()).await.unwrap();
    assert_eq!(sub.next().await.unwrap().unwrap().sequence, 1);
    bus.publish("a.b", Bytes::new()).await.unwrap();
    let next = sub.next().await.unwrap().unwrap();
    assert_eq!((next.sequence, next.delivered), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn max_ack_pending_pauses_new_deliveries_until_an_ack() {
    let bus = MemoryBus::new();
    let limited = SubscribeOptions {
        max_ack_pending: 1,
        ..opts(60_000)
    };
    let mut sub = bus.subscribe("a.>", "d", limited).await.unwrap();
    bus.publish("a.b", Bytes::new()).await.unwrap();
    bus.publish("a.b", Bytes::new()).await.unwrap();
    let first = sub.next().await.unwrap().unwrap();
    let blocked = tokio::time::timeout(Duration::from_secs(10), sub.next()).await;
    assert!(blocked.is_err(), "delivered past max_ack_pending");
    first.ack().await.unwrap();
    assert_eq!(sub.next().await.unwrap().unwrap().sequence, 2);
}

#[tokio::test]
async fn stale_nack_does_not_disturb_the_current_delivery() {
    let bus = MemoryBus::new();
    let mut sub = bus.subscribe("a.>", "d", opts(50)).await.unwrap();
    bus.publish("a.b", Bytes::new()).await.unwrap();
    let stale = sub.next().await.unwrap().unwrap();
    let current = sub.next().await.unwrap().unwrap();
    assert_eq!(current.delivered, 2);
    stale.nack(None).await.unwrap();
    let cell = bus.stream("a");
    let state = lock(&cell.state);
    let pending = state.consumers["d"].pending[&1];
    assert_eq!(pending.delivered, 2);
    assert!(pending.deadline > Instant::now());
}

#[tokio::test(start_paused = true)]
async fn a_deleted_message_due_for_redelivery_is_not_redelivered() {
    let bus = MemoryBus::new();
    let mut sub = bus.subscribe("a.>", "d", opts(60_000)).await.unwrap();
    bus.publish("a.b", Bytes::new()).await.unwrap();
    bus.publish("a.b", Bytes::new()).await.unwrap();
    let first = sub.next().await.unwrap().unwrap();
    // Due at once, but deleted before anyone asks.
    first.nack(None).await.unwrap();
    assert!(bus.delete("a", 1).await.unwrap());
    let next = sub.next().await.unwrap().unwrap();
    assert_eq!((next.sequence, next.delivered), (2, 1));
    // The stale holder's ack and nack are harmless.
    first.ack().await.unwrap();
    first.nack(None).await.unwrap();
    next.ack().await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_secs(120), sub.next()).await;
    assert!(quiet.is_err(), "the deleted message came back");
}

#[tokio::test(start_paused = true)]
async fn deleting_a_pending_message_frees_its_max_ack_pending_slot() {
    let bus = MemoryBus::new();
    let limited = SubscribeOptions {
        max_ack_pending: 1,
        ..opts(60_000)
    };
    let mut sub = bus.subscribe("a.>", "d", limited).await.unwrap();
    bus.publish("a.b", Bytes::new()).await.unwrap();
    bus.publish("a.b", Bytes::new()).await.unwrap();
    assert_eq!(sub.next().await.unwrap().unwrap().sequence, 1);
    let deleter = bus.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        deleter.delete("a", 1).await.unwrap();
    });
    let start = Instant::now();
    assert_eq!(sub.next().await.unwrap().unwrap().sequence, 2);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "woken by the delete"
    );
}

#[tokio::test]
async fn tombstones_keep_cursors_counts_and_limits_right() {
    let bus = MemoryBus::with_limits(StreamLimits {
        max_messages: 3,
        max_bytes: 1 << 20,
    });
    let mut sub = bus.subscribe("a.>", "d", opts(30_000)).await.unwrap();
    for _ in 0..3 {
        bus.publish("a.b", Bytes::from_static(b"12345"))
            .await
            .unwrap();
    }
    // The cursor's own message and a later one go.
    assert!(bus.delete("a", 1).await.unwrap());
    assert!(bus.delete("a", 3).await.unwrap());
    assert_eq!(retained(&bus, "a"), vec![2, 3], "3 stays as a tombstone");
    let info = bus.stream_info("a").await.unwrap().unwrap();
    assert_eq!((info.messages, info.first_seq, info.bytes), (1, 2, 8));
    let lag = bus.consumer_info("a", "d").await.unwrap().unwrap();
    assert_eq!(lag.num_pending, 1);

    // Tombstones do not count against max_messages: three live messages fit.
    bus.publish("a.b", Bytes::new()).await.unwrap();
    bus.publish("a.b", Bytes::new()).await.unwrap();
    assert_eq!(retained(&bus, "a"), vec![2, 3, 4, 5]);
    let got = sub.next().await.unwrap().unwrap();
    assert_eq!(got.sequence, 2);
    got.ack().await.unwrap();
    // Trimming 2 leaves the tombstone 3 at the front, which goes with it.
    assert_eq!(retained(&bus, "a"), vec![4, 5]);
    assert_eq!(sub.next().await.unwrap().unwrap().sequence, 4);
}

#[tokio::test]
async fn read_and_lag_see_only_retained_messages() {
    let bus = MemoryBus::with_limits(StreamLimits {
        max_messages: 2,
        max_bytes: 1 << 20,
    });
    let mut sub = bus.subscribe("a.>", "d", opts(30_000)).await.unwrap();
    for _ in 0..5 {
        bus.publish("a.b", Bytes::new()).await.unwrap();
    }
    let seqs: Vec<u64> = bus
        .read("a", 1, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.sequence)
        .collect();
    assert_eq!(seqs, vec![4, 5], "the limits dropped 1..=3");
    let info = bus.consumer_info("a", "d").await.unwrap().unwrap();
    assert_eq!((info.num_pending, info.delivered_seq), (2, 0));
    let got = sub.next().await.unwrap().unwrap();
    got.ack().await.unwrap();
    assert_eq!(got.sequence, 4);
    assert!(
        bus.read("a", 1, 10)
            .await
            .unwrap()
            .iter()
            .all(|m| m.sequence == 5)
    );
}
