//! The bus's share of the order pipeline, alone: how many orders per second NATS JetStream can
//! carry when nothing but the messages of each order move, with the client and the patterns the
//! worker uses (`strata_bus::NatsBus`: publish awaiting JetStream's ack; durable pull consumers
//! with explicit double acks). `bench/events.sh` reads it as one half of its ceiling.
//!
//! Per order it moves what the pipeline moves on the bus:
//! - 3 publishes (`order.placed`, `order.paid`, `order.shipped`), as the relay publishes them;
//! - 5 deliveries, each acked: `payment` takes `order.placed`, `fulfilment` takes `order.paid`,
//!   `notifications` takes `order.>` (all three), with the worker's subscription options
//!   (prefetch `2 × HANDLER_CONCURRENCY`, at most `8 × HANDLER_CONCURRENCY` unacked) and up to
//!   `HANDLER_CONCURRENCY` deliveries in hand per handler.
//!
//! `CONCURRENCY` publishers each take the next order and publish its three events in turn. The
//! clock runs from the first publish to the last ack. Everything lives in its own namespace,
//! whose streams are deleted at the end.
//!
//! ```text
//! NATS_URL=nats://127.0.0.1:4222 NAMESPACE=ceiling-1 ORDERS=5000 CONCURRENCY=16 \
//!     cargo run --release -p strata-lab --example jetstream_ceiling
//! ```
//! Prints one JSON object: orders, publishes, deliveries, seconds, orders_per_s,
//! messages_per_s. With `DELETE_ONLY=1` it only deletes the streams of `NAMESPACE` (a
//! benchmark's clean-up).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_bus::{Bus, NatsBus, SubscribeOptions};
use tokio::sync::{Notify, Semaphore};

/// The pipeline's subjects, in the order one order's events are published.
const EVENTS: [&str; 3] = ["order.placed", "order.paid", "order.shipped"];
/// The worker's handlers: durable name and filter.
const HANDLERS: [(&str, &str); 3] = [
    ("payment", "order.placed"),
    ("fulfilment", "order.paid"),
    ("notifications", "order.>"),
];
/// Deliveries per order: payment takes placed (1), fulfilment paid (1), notifications all
/// three (3).
const DELIVERIES_PER_ORDER: u64 = 5;
/// The run gives up after this long by default (a lost message would otherwise hang it).
const DEADLINE_S: u64 = 300;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An envelope of the size the relay publishes (about 250 bytes of JSON).
fn payload(order: u64, topic: &str) -> Bytes {
    Bytes::from(format!(
        "{{\"id\":{id},\"topic\":\"{topic}\",\"created_at\":\"2026-11-23T10:00:00.123456Z\",\
         \"data\":{{\"order_id\":{order},\"user_id\":{order},\"status\":\"paid\",\
         \"total_cents\":123456,\"lines\":[{{\"product_id\":17,\"quantity\":2}}],\
         \"at\":\"2026-11-23T10:00:00.123456Z\"}}}}",
        id = order * 3,
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let namespace = std::env::var("NAMESPACE").unwrap_or_else(|_| "ceiling".into());
    let orders: u64 = env_or("ORDERS", 5000);
    let concurrency: u64 = env_or("CONCURRENCY", 16);
    let handler_concurrency: usize = env_or("HANDLER_CONCURRENCY", 16);
    let deadline = Duration::from_secs(env_or("DEADLINE_S", DEADLINE_S));

    let bus = NatsBus::connect(&url, &namespace).await?;
    if env_or("DELETE_ONLY", 0) == 1 {
        let deleted = bus.delete_namespace_streams().await?;
        println!("{{\"deleted_streams\": {deleted}}}");
        return Ok(());
    }
    let opts = SubscribeOptions {
        ack_wait: Duration::from_secs(30),
        max_deliver: None,
        max_ack_pending: u32::try_from(handler_concurrency * 8)?,
        prefetch: u32::try_from(handler_concurrency * 2)?,
    };
    let expected = orders * DELIVERIES_PER_ORDER;
    let acked = Arc::new(AtomicU64::new(0));
    let per_handler: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let all_acked = Arc::new(Notify::new());

    // Consumers first (this creates the stream), so nothing waits for a subscription.
    let mut consumers = Vec::new();
    for (index, (durable, filter)) in HANDLERS.into_iter().enumerate() {
        let mut sub = bus.subscribe(filter, durable, opts).await?;
        let permits = Arc::new(Semaphore::new(handler_concurrency));
        let acked = Arc::clone(&acked);
        let all_acked = Arc::clone(&all_acked);
        let per_handler = Arc::clone(&per_handler);
        consumers.push(tokio::spawn(async move {
            loop {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    break;
                };
                let delivery = match sub.next().await {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(e)) => {
                        eprintln!("{durable}: {e}");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        continue;
                    }
                    None => break,
                };
                let acked = Arc::clone(&acked);
                let all_acked = Arc::clone(&all_acked);
                let per_handler = Arc::clone(&per_handler);
                tokio::spawn(async move {
                    match delivery.ack().await {
                        Ok(()) => {
                            per_handler[index].fetch_add(1, Ordering::Relaxed);
                            if acked.fetch_add(1, Ordering::AcqRel) + 1 == expected {
                                all_acked.notify_one();
                            }
                        }
                        Err(e) => eprintln!("{durable}: ack: {e}"),
                    }
                    drop(permit);
                });
            }
        }));
    }

    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut publishers = Vec::new();
    for _ in 0..concurrency {
        let bus = bus.clone();
        let next = Arc::clone(&next);
        publishers.push(tokio::spawn(async move {
            loop {
                let order = next.fetch_add(1, Ordering::Relaxed);
                if order >= orders {
                    return Ok::<(), strata_bus::BusError>(());
                }
                for topic in EVENTS {
                    bus.publish(topic, payload(order, topic)).await?;
                }
            }
        }));
    }
    for publisher in publishers {
        publisher.await??;
    }
    let published_in = started.elapsed();
    let finished = tokio::time::timeout(deadline, async {
        while acked.load(Ordering::Acquire) < expected {
            all_acked.notified().await;
        }
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();
    for consumer in consumers {
        consumer.abort();
    }
    if let Err(e) = bus.delete_namespace_streams().await {
        eprintln!("cannot delete the streams of {namespace}: {e}");
    }
    let got = acked.load(Ordering::Acquire);
    if finished.is_err() {
        let counts: Vec<u64> = per_handler
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        return Err(format!(
            "only {got} of {expected} deliveries acked after {deadline:?} \
             (payment, fulfilment, notifications: {counts:?})"
        )
        .into());
    }
    println!(
        "{{\"orders\": {orders}, \"publishes\": {}, \"deliveries\": {got}, \
         \"concurrency\": {concurrency}, \"handler_concurrency\": {handler_concurrency}, \
         \"publish_seconds\": {:.3}, \"seconds\": {seconds:.3}, \"orders_per_s\": {:.1}, \
         \"messages_per_s\": {:.1}}}",
        orders * EVENTS.len() as u64,
        published_in.as_secs_f64(),
        orders as f64 / seconds,
        (orders * EVENTS.len() as u64 + got) as f64 / seconds,
    );
    Ok(())
}
