//! The chat protocol end to end on real instances (port 0): fan-out across two instances,
//! resume after an instance dies, presence, draining and bad input.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use strata_bus::AnyBus;
use strata_cache::AnyCache;
use strata_chat::client::{ChatClient, Event, ws_url};
use strata_chat::protocol::{ClientFrame, ServerFrame, close};
use strata_chat::{ChatLimits, ChatServer, ChatSettings, UserRole};
use strata_core::Shutdown;
use strata_core::auth::{TokenKey, TokenUser};
use strata_core::testkit::{NATS, POSTGRES, require_service};
use strata_core::wait::eventually;
use strata_store::Store;
use strata_store::testing::{self, TempFileGuard, TestSchemaGuard};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

const SECRET: [u8; 32] = [7; 32];

/// Backends shared by the instances of one test.
struct Backends {
    store: Store,
    cache: AnyCache,
    bus: AnyBus,
    _file: Option<TempFileGuard>,
    _schema: Option<TestSchemaGuard>,
}

async fn memory_sqlite() -> Backends {
    let (store, file) = testing::fresh_sqlite().await;
    store.migrate().await.unwrap();
    Backends {
        store,
        cache: AnyCache::from_url("memory", "test").await.unwrap(),
        bus: AnyBus::connect("memory", "test").await.unwrap(),
        _file: Some(file),
        _schema: None,
    }
}

async fn nats_postgres() -> Option<Backends> {
    let pg = require_service(POSTGRES)?;
    let nats = require_service(NATS)?;
    let (store, schema) = testing::fresh_postgres(&pg).await.unwrap();
    store.migrate().await.unwrap();
    let namespace = format!("t{}", uuid::Uuid::new_v4().simple());
    Some(Backends {
        store,
        cache: AnyCache::from_url("memory", "test").await.unwrap(),
        bus: AnyBus::connect(&nats, &namespace).await.unwrap(),
        _file: None,
        _schema: Some(schema),
    })
}

fn limits() -> ChatLimits {
    ChatLimits {
        heartbeat: Duration::from_millis(300),
        outgoing_buffer: 2048,
        rate_per_sec: 1000,
        burst: 1000,
        drain_timeout: Duration::from_secs(2),
        ..ChatLimits::default()
    }
}

struct Instance {
    base: String,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), strata_chat::ChatError>>,
}

impl Instance {
    /// Stops the instance as a crash would.
    fn kill(&self) {
        self.task.abort();
    }
}

async fn spawn(backends: &Backends, limits: ChatLimits) -> Instance {
    let settings = ChatSettings {
        instance: format!("chat-{}", uuid::Uuid::new_v4().simple()),
        listen: "127.0.0.1:0".parse().unwrap(),
        jwt_secret: SECRET.to_vec(),
        key_id: "k1".into(),
        limits,
    };
    let server = ChatServer::build(
        settings,
        backends.store.clone(),
        backends.cache.clone(),
        backends.bus.clone(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.local_addr());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    Instance {
        base,
        shutdown,
        task,
    }
}

/// A support agent's (or admin's) token: the account `id` exists in `store` with `role`, since
/// chat reads the role that opens a room from the store, and the token names it.
async fn agent(store: &Store, id: i64, role: UserRole) -> String {
    testing::account(store, id, role).await.unwrap();
    token(id, role)
}

/// A token for user `id`, issued the way the api issues them.
fn token(id: i64, role: UserRole) -> String {
    let user = TokenUser {
        id,
        email: format!("user{id}@example.com"),
        role,
    };
    TokenKey::new(&SECRET, "k1")
        .unwrap()
        .issue(&user, Duration::from_secs(600))
        .unwrap()
}

/// One simulated user: sends `count` messages one after another (each after the previous
/// one's ack), reads every message of its room, reconnects and resumes when cut off, and
/// checks ids arrive gap-free, in order, exactly once.
async fn member(
    bases: Vec<String>,
    user: i64,
    room: String,
    count: usize,
    expected_total: i64,
) -> Vec<(i64, String)> {
    let token = token(user, UserRole::Support);
    let mut last = 0_i64;
    let mut acked = 0_usize;
    let mut seen = Vec::new();
    let mut attempt = 0_usize;
    'connect: loop {
        let base = &bases[attempt % bases.len()];
        attempt += 1;
        let url = ws_url(base, Some(&token), Some(&room), Some(last));
        let Ok(mut client) = ChatClient::connect(&url).await else {
            // A reconnecting client's backoff, not a wait for some state.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let send = |i: usize| ClientFrame::Send {
            room: room.clone(),
            client_id: format!("u{user}-m{i}"),
            body: format!("message {i} from {user}"),
        };
        if acked < count && client.send(&send(acked)).await.is_err() {
            continue;
        }
        loop {
            if last == expected_total && acked == count {
                client.close().await;
                return seen;
            }
            match client.next().await.unwrap() {
                Event::Frame(ServerFrame::Message {
                    id,
                    sender,
                    client_id,
                    ..
                }) => {
                    assert_eq!(
                        id,
                        last + 1,
                        "user {user}: ids must be gap-free and in order"
                    );
                    last = id;
                    seen.push((sender, client_id));
                }
                Event::Frame(ServerFrame::Ack { client_id, .. }) => {
                    assert_eq!(client_id, format!("u{user}-m{acked}"));
                    acked += 1;
                    if acked < count && client.send(&send(acked)).await.is_err() {
                        continue 'connect;
                    }
                }
                Event::Frame(ServerFrame::Error { code, message, .. }) => {
                    panic!("user {user}: error {code}: {message}")
                }
                Event::Frame(_) => {}
                Event::Closed(_) => continue 'connect,
            }
        }
    }
}

/// Messages stored in `rooms` so far (ids are gap-free per room, so the last is the count).
async fn stored_in(store: &Store, rooms: &[String]) -> i64 {
    let mut stored = 0;
    for room in rooms {
        stored += store.chat().last_seq(room).await.unwrap().unwrap_or(0);
    }
    stored
}

/// `clients` users in `rooms` lobbies, alternating between the instances, each sending
/// `count` messages; with `kill_midway` the second instance is killed once a quarter of the
/// messages are stored, so that it dies with traffic in flight.
async fn fan_out_run(
    backends: Backends,
    clients: usize,
    rooms: usize,
    count: usize,
    kill_midway: bool,
) {
    let a = spawn(&backends, limits()).await;
    let b = spawn(&backends, limits()).await;
    let per_room = clients / rooms;
    let total = i64::try_from(per_room * count).unwrap();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let room = format!("lobby-r{}", i % rooms);
        // Users on the second instance fall back to the first when it dies.
        let bases = if i % 2 == 0 {
            vec![a.base.clone()]
        } else {
            vec![b.base.clone(), a.base.clone()]
        };
        let user = i64::try_from(i).unwrap() + 1;
        testing::account(&backends.store, user, UserRole::Support)
            .await
            .unwrap();
        tasks.push((
            room.clone(),
            tokio::spawn(member(bases, user, room, count, total)),
        ));
    }
    if kill_midway {
        let names: Vec<String> = (0..rooms).map(|r| format!("lobby-r{r}")).collect();
        let quarter = total * i64::try_from(rooms).unwrap() / 4;
        eventually(
            Duration::from_secs(60),
            "a quarter of the messages stored",
            || async { (stored_in(&backends.store, &names).await >= quarter).then_some(()) },
        )
        .await;
        b.kill();
    }
    let run = async {
        let mut by_room: std::collections::HashMap<String, Vec<Vec<(i64, String)>>> =
            std::collections::HashMap::new();
        for (room, task) in tasks {
            by_room.entry(room).or_default().push(task.await.unwrap());
        }
        by_room
    };
    let by_room = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("every client got every message in time");
    assert_eq!(by_room.len(), rooms);
    for (room, received) in by_room {
        let first = &received[0];
        assert_eq!(first.len(), per_room * count, "{room}");
        let distinct: HashSet<_> = first.iter().collect();
        assert_eq!(distinct.len(), first.len(), "{room}: a message twice");
        for other in &received {
            assert_eq!(other, first, "{room}: every member sees the same sequence");
        }
        let stored = backends
            .store
            .chat()
            .after(&room, 0, 100_000)
            .await
            .unwrap();
        assert_eq!(
            stored.len(),
            per_room * count,
            "{room}: nothing acknowledged is lost"
        );
    }
    a.shutdown.cancel();
    b.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_deliver_every_message_once_in_order_on_memory_and_sqlite() {
    fan_out_run(memory_sqlite().await, 200, 20, 50, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_deliver_every_message_once_in_order_on_nats_and_postgres() {
    let Some(backends) = nats_postgres().await else {
        return;
    };
    fan_out_run(backends, 200, 20, 50, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_killed_instance_resume_without_loss_or_duplicates() {
    fan_out_run(memory_sqlite().await, 60, 6, 40, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_killed_instance_resume_on_nats_and_postgres() {
    let Some(backends) = nats_postgres().await else {
        return;
    };
    fan_out_run(backends, 60, 6, 40, true).await;
}

async fn presence_of(base: &str, viewer: &str, user: i64) -> bool {
    let body: serde_json::Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{base}/api/v1/chat/presence?users={user}"))
        .bearer_auth(viewer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["users"][0]["online"].as_bool().unwrap()
}

/// The instance's `/metrics` text.
async fn metrics_of(base: &str) -> String {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Reads frames until `want` matches one, failing after `within`.
async fn expect_frame(
    client: &mut ChatClient,
    within: Duration,
    want: impl Fn(&ServerFrame) -> bool,
) -> ServerFrame {
    tokio::time::timeout(within, async {
        loop {
            match client.next().await.unwrap() {
                Event::Frame(frame) if want(&frame) => return frame,
                Event::Frame(_) => {}
                Event::Closed(code) => panic!("closed ({code:?}) while waiting"),
            }
        }
    })
    .await
    .expect("the expected frame in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_a_killed_instance_go_offline_within_two_heartbeats() {
    let backends = memory_sqlite().await;
    let limits = limits();
    let a = spawn(&backends, limits).await;
    let b = spawn(&backends, limits).await;
    let watcher = agent(&backends.store, 100, UserRole::Support).await;
    let agent = agent(&backends.store, 101, UserRole::Support).await;
    let room = "lobby-presence";
    let mut on_b = ChatClient::connect(&ws_url(&b.base, Some(&agent), Some(room), None))
        .await
        .unwrap();
    expect_frame(&mut on_b, Duration::from_secs(2), |f| {
        matches!(f, ServerFrame::Joined { .. })
    })
    .await;
    let mut on_a = ChatClient::connect(&ws_url(&a.base, Some(&watcher), Some(room), None))
        .await
        .unwrap();
    expect_frame(&mut on_a, Duration::from_secs(3), |f| {
        matches!(
            f,
            ServerFrame::Presence {
                user: 101,
                online: true,
                ..
            }
        )
    })
    .await;
    assert!(presence_of(&a.base, &watcher, 101).await);

    b.kill();
    let killed_at = std::time::Instant::now();
    expect_frame(&mut on_a, limits.heartbeat * 4, |f| {
        matches!(
            f,
            ServerFrame::Presence {
                user: 101,
                online: false,
                ..
            }
        )
    })
    .await;
    // The entry expires within two heartbeats; the watcher polls every half heartbeat.
    let noticed = killed_at.elapsed();
    assert!(
        noticed <= limits.heartbeat * 5 / 2 + Duration::from_millis(150),
        "{noticed:?}"
    );
    assert!(!presence_of(&a.base, &watcher, 101).await);

    let _back = ChatClient::connect(&ws_url(&a.base, Some(&agent), Some(room), None))
        .await
        .unwrap();
    expect_frame(&mut on_a, Duration::from_secs(3), |f| {
        matches!(
            f,
            ServerFrame::Presence {
                user: 101,
                online: true,
                ..
            }
        )
    })
    .await;
    assert!(presence_of(&a.base, &watcher, 101).await);
    drop(on_b);
    a.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_closes_with_reconnect_after_pending_frames() {
    let backends = memory_sqlite().await;
    let a = spawn(&backends, limits()).await;
    let t = token(5, UserRole::Customer);
    let mut client = ChatClient::connect(&ws_url(&a.base, Some(&t), Some("support-5"), Some(0)))
        .await
        .unwrap();
    expect_frame(&mut client, Duration::from_secs(2), |f| {
        matches!(f, ServerFrame::Joined { .. })
    })
    .await;
    a.shutdown.cancel();
    let code = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Event::Closed(code) = client.next().await.unwrap() {
                return code;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(code, Some(close::RECONNECT));
    a.task.await.unwrap().unwrap();
}

/// A client that stops reading overflows its bounded outbox: it is closed with 4009 (or
/// dropped, when its socket takes not even the close frame), the room's other members get
/// every message meanwhile, and it resumes from the last id it saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_as_too_slow_and_resumes() {
    // 200 messages of 60 KB: more than the sockets of the slow connection hold (4 MiB of
    // send buffer at most on Linux), so its writer blocks and its outbox overflows.
    const COUNT: i64 = 200;
    let backends = memory_sqlite().await;
    let a = spawn(
        &backends,
        ChatLimits {
            outgoing_buffer: 8,
            heartbeat: Duration::from_secs(1),
            max_body_bytes: 60_000,
            max_frame_bytes: 64 * 1024,
            ..limits()
        },
    )
    .await;
    let room = "lobby-slow";
    for user in 1..=3 {
        testing::account(&backends.store, user, UserRole::Support)
            .await
            .unwrap();
    }
    let url = |user: i64, after: i64| {
        ws_url(
            &a.base,
            Some(&token(user, UserRole::Support)),
            Some(room),
            Some(after),
        )
    };
    // The slow client: a tiny receive window, and nothing read once it has joined.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket
        .connect(a.base.trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap();
    let (mut slow, _) = tokio_tungstenite::client_async(url(1, 0), stream)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(frame)) = slow.next().await {
            if let Message::Text(text) = frame
                && matches!(serde_json::from_str(&text), Ok(ServerFrame::Joined { .. }))
            {
                return;
            }
        }
        panic!("the slow client was not joined");
    })
    .await
    .unwrap();

    // A member that keeps up, and a sender (which also keeps up: one message per ack).
    let mut keeping_up = ChatClient::connect(&url(2, 0)).await.unwrap();
    expect_frame(&mut keeping_up, Duration::from_secs(2), |f| {
        matches!(f, ServerFrame::Joined { .. })
    })
    .await;
    let reading = tokio::spawn(async move {
        let mut ids = Vec::new();
        while (ids.len() as i64) < COUNT {
            match keeping_up.next().await.unwrap() {
                Event::Frame(ServerFrame::Message { id, .. }) => ids.push(id),
                Event::Frame(_) => {}
                Event::Closed(code) => panic!("a reading member was closed ({code:?})"),
            }
        }
        ids
    });
    let mut sender = ChatClient::connect(&url(3, 0)).await.unwrap();
    let body = "x".repeat(60_000);
    for i in 0..COUNT {
        let client_id = format!("m{i}");
        sender
            .send(&ClientFrame::Send {
                room: room.into(),
                client_id: client_id.clone(),
                body: body.clone(),
            })
            .await
            .unwrap();
        expect_frame(
            &mut sender,
            Duration::from_secs(5),
            |f| matches!(f, ServerFrame::Ack { client_id: c, .. } if *c == client_id),
        )
        .await;
    }
    let ids = tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .expect("the reading member got every message")
        .unwrap();
    assert_eq!(ids, (1..=COUNT).collect::<Vec<_>>());

    // The instance ends the slow connection though the client still reads nothing: with the
    // close frame (4009) when its socket takes it, or by dropping the connection a heartbeat
    // or two later when the socket stays full.
    let dropped = eventually(
        Duration::from_secs(10),
        "the slow connection dropped",
        || async {
            let text = metrics_of(&a.base).await;
            text.contains("strata_chat_connections 2\n").then_some(text)
        },
    )
    .await;
    assert!(
        dropped.contains("strata_chat_slow_closed_total 1\n"),
        "one slow close counted: {dropped}"
    );
    // What reached it is a gap-free prefix of the room, then the close or the end.
    let last = tokio::time::timeout(Duration::from_secs(10), async {
        let mut last = 0;
        loop {
            match slow.next().await {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(ServerFrame::Message { id, .. }) = serde_json::from_str(&text) {
                        assert_eq!(id, last + 1, "in order, without gaps");
                        last = id;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map(|f| u16::from(f.code));
                    assert_eq!(code, Some(close::TOO_SLOW));
                    return last;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return last,
            }
        }
    })
    .await
    .expect("the slow client reads to the end");
    assert!(last < COUNT, "the slow client cannot have taken everything");

    // It resumes from its last id and gets the rest, in order.
    let mut resumed = ChatClient::connect(&url(1, last)).await.unwrap();
    let mut next = last + 1;
    while next <= COUNT {
        let frame = expect_frame(&mut resumed, Duration::from_secs(5), |f| {
            matches!(f, ServerFrame::Message { .. })
        })
        .await;
        if let ServerFrame::Message { id, .. } = frame {
            assert_eq!(id, next);
            next += 1;
        }
    }
    a.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_error_frames_or_close_codes_and_others_are_served() {
    let backends = memory_sqlite().await;
    let limits = ChatLimits {
        rate_per_sec: 5,
        burst: 10,
        ..limits()
    };
    let a = spawn(&backends, limits).await;
    let t = token(9, UserRole::Customer);
    let url = ws_url(&a.base, Some(&t), None, None);
    let mut c = ChatClient::connect(&url).await.unwrap();
    let error_code = |f: &ServerFrame| matches!(f, ServerFrame::Error { .. });
    let code_of = |f: ServerFrame| match f {
        ServerFrame::Error { code, .. } => code,
        other => panic!("{other:?}"),
    };
    let wait = Duration::from_secs(2);

    c.send_raw("{not json").await.unwrap();
    assert_eq!(
        code_of(expect_frame(&mut c, wait, error_code).await),
        "invalid_frame"
    );
    c.send(&ClientFrame::Join {
        room: "general".into(),
        after: None,
    })
    .await
    .unwrap();
    assert_eq!(
        code_of(expect_frame(&mut c, wait, error_code).await),
        "unknown_room"
    );
    c.send(&ClientFrame::Join {
        room: "support-10".into(),
        after: None,
    })
    .await
    .unwrap();
    assert_eq!(
        code_of(expect_frame(&mut c, wait, error_code).await),
        "forbidden"
    );
    c.send(&ClientFrame::Send {
        room: "support-9".into(),
        client_id: "a".into(),
        body: "x".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        code_of(expect_frame(&mut c, wait, error_code).await),
        "not_joined"
    );
    // A string that is not a room id is an unknown room, whatever the frame.
    c.send(&ClientFrame::Send {
        room: "general".into(),
        client_id: "a".into(),
        body: "x".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        code_of(expect_frame(&mut c, wait, error_code).await),
        "unknown_room"
    );
    c.send(&ClientFrame::Typing {
        room: "general".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        code_of(expect_frame(&mut c, wait, error_code).await),
        "unknown_room"
    );
    c.send(&ClientFrame::Join {
        room: "support-9".into(),
        after: None,
    })
    .await
    .unwrap();
    c.send(&ClientFrame::Send {
        room: "support-9".into(),
        client_id: "big".into(),
        body: "x".repeat(limits.max_body_bytes + 1),
    })
    .await
    .unwrap();
    assert_eq!(
        code_of(expect_frame(&mut c, wait, error_code).await),
        "too_large"
    );

    // A frame beyond the frame limit closes with 1009.
    let mut big = ChatClient::connect(&url).await.unwrap();
    big.send_raw(&"y".repeat(limits.max_frame_bytes + 10))
        .await
        .unwrap();
    let closed = tokio::time::timeout(wait, async {
        loop {
            if let Event::Closed(code) = big.next().await.unwrap() {
                return code;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(closed, Some(close::TOO_BIG));

    // A flood gets `rate_limited`, then a policy close.
    let mut flood = ChatClient::connect(&url).await.unwrap();
    let mut codes = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        for _ in 0..200 {
            if flood.send(&ClientFrame::Ping).await.is_err() {
                break;
            }
        }
        loop {
            match flood.next().await.unwrap() {
                Event::Frame(ServerFrame::Error { code, .. }) => codes.push(code),
                Event::Frame(_) => {}
                Event::Closed(code) => return code,
            }
        }
    })
    .await
    .unwrap();
    assert!(codes.contains(&"rate_limited".to_owned()), "{codes:?}");
    assert_eq!(closed, Some(close::POLICY));

    // Everyone else is still served, once the instance has let go of the two it closed.
    eventually(
        Duration::from_secs(5),
        "the closed connections gone",
        || async {
            metrics_of(&a.base)
                .await
                .contains("strata_chat_connections 1\n")
                .then_some(())
        },
    )
    .await;
    c.send(&ClientFrame::Send {
        room: "support-9".into(),
        client_id: "ok".into(),
        body: "still here".into(),
    })
    .await
    .unwrap();
    let ack = expect_frame(&mut c, wait, |f| matches!(f, ServerFrame::Ack { .. })).await;
    assert!(
        matches!(
            ack,
            ServerFrame::Ack {
                id: 1,
                duplicate: false,
                ..
            }
        ),
        "{ack:?}"
    );
    // Sent again: de-duplicated.
    c.send(&ClientFrame::Send {
        room: "support-9".into(),
        client_id: "ok".into(),
        body: "again".into(),
    })
    .await
    .unwrap();
    let ack = expect_frame(&mut c, wait, |f| matches!(f, ServerFrame::Ack { .. })).await;
    assert!(
        matches!(
            ack,
            ServerFrame::Ack {
                id: 1,
                duplicate: true,
                ..
            }
        ),
        "{ack:?}"
    );

    // A bad token is refused before the upgrade.
    assert!(
        ChatClient::connect(&ws_url(&a.base, Some("bad"), None, None))
            .await
            .is_err()
    );
    a.shutdown.cancel();
}

#[tokio::test]
async fn history_pages_and_authorizes() {
    let backends = memory_sqlite().await;
    let a = spawn(&backends, limits()).await;
    let chat = backends.store.chat();
    testing::account(&backends.store, 3, UserRole::Customer)
        .await
        .unwrap();
    chat.join("support-3", strata_store::ChatRoomKind::Support, 3)
        .await
        .unwrap();
    for i in 0..5 {
        chat.post("support-3", 3, &format!("c{i}"), "hi")
            .await
            .unwrap();
    }
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |path: &str, tok: Option<String>| {
        let mut req = http.get(format!("{}{path}", a.base));
        if let Some(tok) = tok {
            req = req.bearer_auth(tok);
        }
        req.send()
    };
    let owner = token(3, UserRole::Customer);
    let page: serde_json::Value = get(
        "/api/v1/chat/rooms/support-3/messages?after=1&limit=2",
        Some(owner.clone()),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let ids: Vec<i64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [2, 3]);
    assert_eq!(page["next_after"], 3);
    // The fields of the `message` frame, not the store's.
    let first = &page["messages"][0];
    assert!(
        first["sender"].is_i64() && first["sent_at"].is_string(),
        "{page}"
    );
    // With the sender's display name, as the frame has it.
    assert_eq!(first["sender_name"], "User 3", "{page}");
    assert!(
        first.get("seq").is_none() && first.get("sender_id").is_none(),
        "{page}"
    );
    // The last page has no `next_after` (absent, not null).
    let last: serde_json::Value = get(
        "/api/v1/chat/rooms/support-3/messages?after=3",
        Some(owner.clone()),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(last.get("next_after").is_none(), "{last}");
    let agent = agent(&backends.store, 50, UserRole::Support).await;
    let r = get("/api/v1/chat/rooms/support-3/messages", Some(agent))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (path, tok, status) in [
        (
            "/api/v1/chat/rooms/support-3/messages",
            Some(token(4, UserRole::Customer)),
            403,
        ),
        ("/api/v1/chat/rooms/support-3/messages", None, 401),
        ("/api/v1/chat/rooms/nope/messages", Some(owner.clone()), 404),
        (
            "/api/v1/chat/rooms/support-3/messages?after=x",
            Some(owner.clone()),
            400,
        ),
        (
            "/api/v1/chat/rooms/support-3/messages?limit=0",
            Some(owner.clone()),
            400,
        ),
        ("/api/v1/chat/ws", Some(owner.clone()), 400),
    ] {
        let r = get(path, tok).await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
    }
    a.shutdown.cancel();
}

/// Chat accepts the api's tokens and refuses them altered: a token issued the way the api
/// issues it (through the shared `TokenKey::issue`, which `strata_api::auth::Tokens::issue`
/// calls) reads history and opens a connection; the same token with one character of its
/// signature changed gets a 401 and no connection (strata-api's tests show the api refuses it
/// too).
#[tokio::test]
async fn api_tokens_are_accepted_and_tampered_ones_refused() {
    let backends = memory_sqlite().await;
    let a = spawn(&backends, limits()).await;
    let good = token(3, UserRole::Customer);
    let mut bytes = good.clone().into_bytes();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let history = |token: &str| {
        http.get(format!("{}/api/v1/chat/rooms/support-3/messages", a.base))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(history(&good).await.unwrap().status(), 200);
    let refused = history(&tampered).await.unwrap();
    assert_eq!(refused.status(), 401);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");

    let mut client = ChatClient::connect(&ws_url(&a.base, Some(&good), Some("support-3"), None))
        .await
        .unwrap();
    expect_frame(&mut client, Duration::from_secs(2), |f| {
        matches!(f, ServerFrame::Joined { .. })
    })
    .await;
    assert!(
        ChatClient::connect(&ws_url(&a.base, Some(&tampered), Some("support-3"), None))
            .await
            .is_err()
    );
    a.shutdown.cancel();
}

type RawWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket straight from tokio-tungstenite: `ChatClient` reports a reset as a close
/// without code, and these tests tell the two apart.
async fn raw_connect(url: &str) -> RawWs {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// How the server ended a connection: the code of its close frame (`None` without one), and
/// whether the TCP connection then ended cleanly (EOF) rather than with an error (a reset).
/// Other frames are skipped.
async fn ending<S>(ws: &mut S) -> (Option<u16>, bool)
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut code = None;
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => {
                    code = Some(frame.map_or(1005, |f| u16::from(f.code)));
                }
                Some(Ok(_)) => {}
                None => return (code, true),
                Some(Err(_)) => return (code, false),
            }
        }
    })
    .await
    .expect("the connection ended within 5 s")
}

/// Sends `first`, then up to `more` pings, on `ws` while reading it (a client that does not
/// wait for answers), until the server closes; returns how it ended.
async fn sending_until_closed(ws: RawWs, first: Message, more: usize) -> (Option<u16>, bool) {
    use futures_util::SinkExt;
    let (mut tx, mut rx) = ws.split();
    // Stops at the first refused send: once the client has the server's close, sends fail.
    let sender = tokio::spawn(async move {
        if tx.send(first).await.is_err() {
            return;
        }
        for _ in 0..more {
            if tx.send(Message::text(r#"{"type":"ping"}"#)).await.is_err() {
                return;
            }
        }
    });
    let ended = ending(&mut rx).await;
    sender.abort();
    ended
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_from_the_client_is_answered_with_its_code_then_the_connection_ends() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let backends = memory_sqlite().await;
    let a = spawn(&backends, limits()).await;
    let t = token(21, UserRole::Customer);
    let mut ws = raw_connect(&ws_url(&a.base, Some(&t), Some("support-21"), None)).await;
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    assert_eq!(ending(&mut ws).await, (Some(1000), true));
    a.shutdown.cancel();
}

/// An instance whose clients get 5 frames a second (bursts of 10), and the URL of a
/// WebSocket to it.
async fn strict(backends: &Backends, user: i64) -> (Instance, ChatLimits, String) {
    let limits = ChatLimits {
        rate_per_sec: 5,
        burst: 10,
        ..limits()
    };
    let instance = spawn(backends, limits).await;
    let t = token(user, UserRole::Customer);
    let url = ws_url(&instance.base, Some(&t), None, None);
    (instance, limits, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_closed_with_1009_without_a_reset() {
    let backends = memory_sqlite().await;
    let (a, limits, url) = strict(&backends, 22).await;
    // The instance stops reading at the frame's header: the rest of it, and what the client
    // sends next, stays unread when it closes.
    for _ in 0..3 {
        let big = Message::text("y".repeat(limits.max_frame_bytes + 10));
        let ended = sending_until_closed(raw_connect(&url).await, big, 200).await;
        assert_eq!(ended, (Some(close::TOO_BIG), true));
    }
    a.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_closed_with_4008_without_a_reset() {
    let backends = memory_sqlite().await;
    let (a, _, url) = strict(&backends, 23).await;
    // Frames keep coming after the instance decided to close.
    for _ in 0..3 {
        let ping = Message::text(r#"{"type":"ping"}"#);
        let ended = sending_until_closed(raw_connect(&url).await, ping, 1000).await;
        assert_eq!(ended, (Some(close::POLICY), true));
    }
    a.shutdown.cancel();
}

/// With a drain delay, shutdown first turns the instance unready while its connections stay
/// and new ones are still accepted (a balancer stops sending meanwhile); only after the delay
/// are clients told to reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_delay_keeps_connections_and_turns_unready_first() {
    let backends = memory_sqlite().await;
    let delay = Duration::from_millis(1500);
    let a = spawn(
        &backends,
        ChatLimits {
            drain_delay: delay,
            ..limits()
        },
    )
    .await;
    let t = token(6, UserRole::Customer);
    let url = ws_url(&a.base, Some(&t), Some("support-6"), Some(0));
    let mut client = ChatClient::connect(&url).await.unwrap();
    expect_frame(&mut client, Duration::from_secs(2), |f| {
        matches!(f, ServerFrame::Joined { .. })
    })
    .await;
    let asked = std::time::Instant::now();
    a.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let ready = http.get(format!("{}/readyz", a.base)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503, "still ready while draining");
    // The listener still answers within the delay.
    let health = http
        .get(format!("{}/healthz", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let code = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Event::Closed(code) = client.next().await.unwrap() {
                return code;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(code, Some(close::RECONNECT));
    assert!(
        asked.elapsed() >= delay,
        "told to reconnect after {:?}, before the delay",
        asked.elapsed()
    );
    a.task.await.unwrap().unwrap();
}

/// What a caller's WebSocket session in a room came to: joined and acknowledged, refused with
/// an error frame, or closed before authenticating.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    JoinedAndAcked,
    Refused(String),
    Closed(Option<u16>),
}

/// Joins `room` and sends one message there (anonymous: sends without authenticating).
async fn join_and_send(base: &str, token: Option<&str>, room: &str, n: usize) -> Outcome {
    let mut client = ChatClient::connect(&ws_url(base, token, None, None))
        .await
        .unwrap();
    let join = ClientFrame::Join {
        room: room.into(),
        after: Some(0),
    };
    if client.send(&join).await.is_err() {
        return Outcome::Closed(None);
    }
    let outcome = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match client.next().await {
                Ok(Event::Frame(ServerFrame::Joined { .. })) => return None,
                Ok(Event::Frame(ServerFrame::Error { code, .. })) => {
                    return Some(Outcome::Refused(code));
                }
                Ok(Event::Frame(_)) => {}
                Ok(Event::Closed(code)) => return Some(Outcome::Closed(code)),
                Err(_) => return Some(Outcome::Closed(None)),
            }
        }
    })
    .await
    .expect("an answer to join in time");
    if let Some(outcome) = outcome {
        return outcome;
    }
    let send = ClientFrame::Send {
        room: room.into(),
        client_id: format!("matrix-{n}"),
        body: format!("from caller {n}"),
    };
    client.send(&send).await.unwrap();
    expect_frame(&mut client, Duration::from_secs(2), |f| {
        matches!(f, ServerFrame::Ack { .. })
    })
    .await;
    client.close().await;
    Outcome::JoinedAndAcked
}

/// Who may do what in chat: its HTTP routes and the WebSocket's join, send and history, as
/// anonymous, customer A (user 3, whose support room is `support-3`), customer B (user 4),
/// support and admin, each answer checked against one table.
#[tokio::test]
async fn every_chat_operation_answers_each_role_as_the_table_says() {
    let backends = memory_sqlite().await;
    let a = spawn(&backends, limits()).await;
    let callers = [
        ("anonymous", None),
        ("customer A", Some(token(3, UserRole::Customer))),
        ("customer B", Some(token(4, UserRole::Customer))),
        (
            "support",
            Some(agent(&backends.store, 50, UserRole::Support).await),
        ),
        (
            "admin",
            Some(agent(&backends.store, 60, UserRole::Admin).await),
        ),
    ];
    let joined = || Outcome::JoinedAndAcked;
    let forbidden = || Outcome::Refused("forbidden".into());
    let unauthenticated = || Outcome::Closed(Some(close::UNAUTHORIZED));
    for (room, expect) in [
        (
            "support-3",
            [unauthenticated(), joined(), forbidden(), joined(), joined()],
        ),
        (
            "lobby-ops",
            [
                unauthenticated(),
                forbidden(),
                forbidden(),
                joined(),
                joined(),
            ],
        ),
    ] {
        for (n, ((name, token), expected)) in callers.iter().zip(expect).enumerate() {
            let outcome = join_and_send(&a.base, token.as_deref(), room, n).await;
            assert_eq!(outcome, expected, "join and send in {room} as {name}");
        }
    }

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let rows: [(&str, [u16; 5]); 5] = [
        (
            "/api/v1/chat/rooms/support-3/messages?after=0",
            [401, 200, 403, 200, 200],
        ),
        (
            "/api/v1/chat/rooms/lobby-ops/messages?after=0",
            [401, 403, 403, 200, 200],
        ),
        (
            "/api/v1/chat/presence?room=support-3",
            [401, 200, 403, 200, 200],
        ),
        (
            "/api/v1/chat/presence?room=lobby-ops",
            [401, 403, 403, 200, 200],
        ),
        // Online or not is no secret among signed-in users.
        ("/api/v1/chat/presence?users=3", [401, 200, 200, 200, 200]),
    ];
    for (path, expect) in rows {
        for ((name, token), status) in callers.iter().zip(expect) {
            let mut request = http.get(format!("{}{path}", a.base));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            let got = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(got, status, "GET {path} as {name}: {body}");
            if status != 200 {
                assert!(
                    body["error"]["code"].is_string(),
                    "{path} as {name}: {body}"
                );
            }
        }
    }
    // History holds exactly the messages of those the room admitted: A, support, admin.
    let page: serde_json::Value = http
        .get(format!(
            "{}/api/v1/chat/rooms/support-3/messages?after=0",
            a.base
        ))
        .bearer_auth(callers[1].1.as_deref().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bodies: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        ["from caller 1", "from caller 3", "from caller 4"],
        "{page}"
    );
    a.shutdown.cancel();
}

/// A role granted or revoked applies to the account's next join and history read, with the
/// token it already has (chat reads the role from the store); and every message, live or from
/// history, names its sender by display name.
#[tokio::test]
async fn roles_apply_at_once_and_messages_carry_display_names() {
    let backends = memory_sqlite().await;
    let a = spawn(&backends, limits()).await;
    let users = backends.store.users();
    let room = "lobby-grants";
    let history = format!("{}/api/v1/chat/rooms/{room}/messages", a.base);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let read = |token: String| http.get(&history).bearer_auth(token).send();

    testing::account(&backends.store, 7, UserRole::Customer)
        .await
        .unwrap();
    let customer = token(7, UserRole::Customer);
    let refused = join_and_send(&a.base, Some(&customer), room, 0).await;
    assert_eq!(refused, Outcome::Refused("forbidden".into()));
    assert_eq!(read(customer.clone()).await.unwrap().status(), 403);

    // Granted: the customer's token opens the lobby at once.
    users.set_role(7, UserRole::Support).await.unwrap();
    let watcher = agent(&backends.store, 8, UserRole::Support).await;
    let mut watching = ChatClient::connect(&ws_url(&a.base, Some(&watcher), Some(room), None))
        .await
        .unwrap();
    expect_frame(&mut watching, Duration::from_secs(2), |f| {
        matches!(f, ServerFrame::Joined { .. })
    })
    .await;
    let joined = join_and_send(&a.base, Some(&customer), room, 1).await;
    assert_eq!(joined, Outcome::JoinedAndAcked);
    let live = expect_frame(&mut watching, Duration::from_secs(2), |f| {
        matches!(f, ServerFrame::Message { .. })
    })
    .await;
    let ServerFrame::Message {
        sender,
        sender_name,
        ..
    } = live
    else {
        unreachable!()
    };
    assert_eq!((sender, sender_name.as_str()), (7, "User 7"));
    let page: serde_json::Value = read(customer.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(page["messages"][0]["sender_name"], "User 7", "{page}");
    watching.close().await;

    // Revoked: a token issued while the account was support no longer opens the lobby.
    let stale = token(7, UserRole::Support);
    users.set_role(7, UserRole::Customer).await.unwrap();
    let refused = join_and_send(&a.base, Some(&stale), room, 2).await;
    assert_eq!(refused, Outcome::Refused("forbidden".into()));
    assert_eq!(read(stale).await.unwrap().status(), 403);
    // Its own support room stays open whatever the role.
    let own = join_and_send(&a.base, Some(&customer), "support-7", 3).await;
    assert_eq!(own, Outcome::JoinedAndAcked);
    a.shutdown.cancel();
}

/// The `Cookie` header of a browser logged in with `token`.
fn cookie(token: &str) -> String {
    format!("theme=dark; {}={token}", strata_core::auth::SESSION_COOKIE)
}

/// Connects as a browser would: the session cookie and the page's `Origin`, no token.
async fn browser_connect(
    base: &str,
    token: &str,
    origin: &str,
    room: Option<&str>,
    after: Option<i64>,
) -> Result<ChatClient, strata_chat::client::ClientError> {
    let cookie = cookie(token);
    ChatClient::connect_with(
        &ws_url(base, None, room, after),
        &[("cookie", cookie.as_str()), ("origin", origin)],
    )
    .await
}

/// Frames that arrive within `within` (the connection stays open).
async fn frames_within(client: &mut ChatClient, within: Duration) -> Vec<ServerFrame> {
    let mut frames = Vec::new();
    let _ = tokio::time::timeout(within, async {
        while let Ok(Event::Frame(frame)) = client.next().await {
            frames.push(frame);
        }
    })
    .await;
    frames
}

/// What the browser widget and the agents' console rely on, on two instances sharing the
/// backends: the session cookie opens every route and the WebSocket (a cross-site page's
/// handshake refused), the support room list (agents only) counts each agent's unread
/// messages from their read marker, a new agent in a room shows as present to the customer on
/// the other instance before the periodic roster read, and typing notices are relayed at most
/// once a second per room and connection.
async fn console_run(backends: Backends) {
    // A heartbeat long enough for a test client that reads nothing for a while (it answers
    // pings only while it reads) and short beside the periodic roster read (ten of them).
    let limits = ChatLimits {
        heartbeat: Duration::from_secs(2),
        ..limits()
    };
    let a = spawn(&backends, limits).await;
    let b = spawn(&backends, limits).await;
    testing::account(&backends.store, 3, UserRole::Customer)
        .await
        .unwrap();
    let customer = token(3, UserRole::Customer);
    let agent = agent(&backends.store, 50, UserRole::Support).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let list = |base: &str, query: &str, cookie_of: Option<&str>| {
        let mut request = http.get(format!("{base}/api/v1/chat/rooms{query}"));
        if let Some(token) = cookie_of {
            request = request.header("cookie", cookie(token));
        }
        request.send()
    };

    // The widget: the customer's browser on instance a, by cookie alone.
    let origin_a = a.base.clone();
    let evil = browser_connect(
        &a.base,
        &customer,
        "http://evil.example",
        Some("support-3"),
        None,
    )
    .await
    .err()
    .expect("a cross-site handshake is refused");
    assert!(
        matches!(
            evil,
            strata_chat::client::ClientError::Refused { status: 403, .. }
        ),
        "{evil:?}"
    );
    let mut widget = browser_connect(&a.base, &customer, &origin_a, Some("support-3"), Some(0))
        .await
        .unwrap();
    expect_frame(&mut widget, Duration::from_secs(2), |f| {
        matches!(f, ServerFrame::Joined { .. })
    })
    .await;
    for i in 0..2 {
        widget
            .send(&ClientFrame::Send {
                room: "support-3".into(),
                client_id: format!("w{i}"),
                body: format!("help {i}"),
            })
            .await
            .unwrap();
        expect_frame(&mut widget, Duration::from_secs(2), |f| {
            matches!(f, ServerFrame::Ack { .. })
        })
        .await;
    }
    // History by cookie too.
    let page: serde_json::Value = http
        .get(format!("{}/api/v1/chat/rooms/support-3/messages", a.base))
        .header("cookie", cookie(&customer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["messages"].as_array().unwrap().len(), 2, "{page}");

    // The list: agents only, every input checked.
    for (query, who, status) in [
        ("", None, 401),
        ("", Some(customer.as_str()), 403),
        ("?limit=0", Some(agent.as_str()), 400),
        ("?limit=201", Some(agent.as_str()), 400),
        ("?limit=x", Some(agent.as_str()), 400),
    ] {
        let response = list(&b.base, query, who).await.unwrap();
        assert_eq!(response.status(), status, "{query} as {who:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    let rooms = |body: serde_json::Value| body["rooms"].as_array().unwrap().clone();
    let listed = rooms(
        list(&b.base, "", Some(&agent))
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(listed.len(), 1, "{listed:?}");
    let room = &listed[0];
    assert_eq!(room["room"], "support-3");
    assert_eq!(room["customer"], 3);
    assert_eq!(room["customer_name"], "User 3");
    assert_eq!(room["customer_online"], true);
    assert_eq!(room["unread"], 2);
    assert_eq!(room["last_message"]["body"], "help 1");
    assert_eq!(room["last_message"]["sender_name"], "User 3");

    // The console: the agent's browser on instance b joins the room; the customer, on a,
    // learns the agent is here before a's periodic roster read (ten heartbeats).
    let origin_b = b.base.clone();
    let mut console = browser_connect(&b.base, &agent, &origin_b, None, None)
        .await
        .unwrap();
    console
        .send(&ClientFrame::Join {
            room: "support-3".into(),
            after: Some(0),
        })
        .await
        .unwrap();
    let joined_at = std::time::Instant::now();
    expect_frame(&mut console, Duration::from_secs(2), |f| {
        matches!(f, ServerFrame::Message { id: 2, .. })
    })
    .await;
    expect_frame(&mut widget, limits.heartbeat * 5, |f| {
        matches!(
            f,
            ServerFrame::Presence {
                user: 50,
                online: true,
                ..
            }
        )
    })
    .await;
    assert!(joined_at.elapsed() < limits.heartbeat * 5);

    // Typing: five notices at once are relayed once; another a second later is relayed.
    for _ in 0..5 {
        console
            .send(&ClientFrame::Typing {
                room: "support-3".into(),
            })
            .await
            .unwrap();
    }
    let seen = frames_within(&mut widget, Duration::from_millis(600)).await;
    let typing = |frames: &[ServerFrame]| {
        frames
            .iter()
            .filter(|f| matches!(f, ServerFrame::Typing { user: 50, .. }))
            .count()
    };
    assert_eq!(typing(&seen), 1, "{seen:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    console
        .send(&ClientFrame::Typing {
            room: "support-3".into(),
        })
        .await
        .unwrap();
    let seen = frames_within(&mut widget, Duration::from_millis(600)).await;
    assert_eq!(typing(&seen), 1, "{seen:?}");

    // Read markers: forward only, never past the room, only in a joined room.
    let unread = || async {
        let body: serde_json::Value = list(&b.base, "", Some(&agent))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["rooms"][0]["unread"].as_i64().unwrap()
    };
    let read = |id: i64| ClientFrame::Read {
        room: "support-3".into(),
        id,
    };
    console.send(&read(2)).await.unwrap();
    eventually(Duration::from_secs(2), "the marker moves", || async {
        (unread().await == 0).then_some(())
    })
    .await;
    console.send(&read(99)).await.unwrap();
    console.send(&read(1)).await.unwrap();
    console
        .send(&ClientFrame::Read {
            room: "support-4".into(),
            id: 1,
        })
        .await
        .unwrap();
    let refused = expect_frame(&mut console, Duration::from_secs(2), |f| {
        matches!(f, ServerFrame::Error { .. })
    })
    .await;
    assert!(
        matches!(&refused, ServerFrame::Error { code, .. } if code == "not_joined"),
        "{refused:?}"
    );
    assert_eq!(unread().await, 0);
    widget
        .send(&ClientFrame::Send {
            room: "support-3".into(),
            client_id: "w2".into(),
            body: "still there?".into(),
        })
        .await
        .unwrap();
    eventually(
        Duration::from_secs(2),
        "a new message is unread",
        || async { (unread().await == 1).then_some(()) },
    )
    .await;
    // The agent's own answer is not unread to them.
    console
        .send(&ClientFrame::Send {
            room: "support-3".into(),
            client_id: "a0".into(),
            body: "yes".into(),
        })
        .await
        .unwrap();
    expect_frame(&mut widget, Duration::from_secs(2), |f| {
        matches!(f, ServerFrame::Message { sender: 50, .. })
    })
    .await;
    assert_eq!(unread().await, 1);
    widget.close().await;
    console.close().await;
    a.shutdown.cancel();
    b.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_and_the_widget_work_by_cookie_on_memory_and_sqlite() {
    console_run(memory_sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_and_the_widget_work_by_cookie_on_nats_and_postgres() {
    let Some(backends) = nats_postgres().await else {
        return;
    };
    console_run(backends).await;
}

/// Sends a ping and waits for its pong: the connection has handled what came before.
async fn settled(client: &mut ChatClient) {
    client.send(&ClientFrame::Ping).await.unwrap();
    expect_frame(client, Duration::from_secs(5), |f| {
        matches!(f, ServerFrame::Pong)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_watching_support_rooms_get_their_activity_and_others_are_refused() {
    let backends = memory_sqlite().await;
    let a = spawn(&backends, limits()).await;
    let desk = agent(&backends.store, 2, UserRole::Support).await;
    testing::account(&backends.store, 3, UserRole::Customer)
        .await
        .unwrap();
    testing::account(&backends.store, 4, UserRole::Customer)
        .await
        .unwrap();
    let watch = |token: &str| format!("{}&watch=support", ws_url(&a.base, Some(token), None, None));
    let mut agent = ChatClient::connect(&watch(&desk)).await.unwrap();
    settled(&mut agent).await;

    // A customer writes in their support room, which the agent has not joined.
    let customer = token(3, UserRole::Customer);
    let url = ws_url(&a.base, Some(&customer), Some("support-3"), None);
    let mut writer = ChatClient::connect(&url).await.unwrap();
    writer
        .send(&ClientFrame::Send {
            room: "support-3".into(),
            client_id: "c-1".into(),
            body: "is anyone there?".into(),
        })
        .await
        .unwrap();
    let frame = expect_frame(&mut agent, Duration::from_secs(5), |f| {
        matches!(f, ServerFrame::Activity { .. })
    })
    .await;
    let ServerFrame::Activity {
        room, sender, body, ..
    } = frame
    else {
        unreachable!("matched above")
    };
    assert_eq!(
        (room.as_str(), sender, body.as_str()),
        ("support-3", 3, "is anyone there?")
    );

    // A customer may not watch the support rooms; the connection stays open.
    let mut other = ChatClient::connect(&watch(&token(4, UserRole::Customer)))
        .await
        .unwrap();
    let refused = expect_frame(&mut other, Duration::from_secs(5), |f| {
        matches!(f, ServerFrame::Error { .. })
    })
    .await;
    assert!(
        matches!(&refused, ServerFrame::Error { code, .. } if code == "forbidden"),
        "{refused:?}"
    );
    settled(&mut other).await;

    // Only `support` may be watched.
    let bad = format!(
        "{}&watch=everything",
        ws_url(&a.base, Some(&desk), None, None)
    );
    assert!(ChatClient::connect(&bad).await.is_err());
}
