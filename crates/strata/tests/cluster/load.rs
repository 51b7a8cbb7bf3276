//! The steady load a cluster test applies through the gateway while it injects a fault, and
//! the record of what each request did, so the test can tell when requests failed and check
//! afterwards that nothing acknowledged was lost:
//!
//! - **reads**: `GET /api/v1/products/{id}` in a few loops;
//! - **checkouts**: customers who add the test product to their cart and check out with an
//!   `Idempotency-Key`, sending the same key again until the order is acknowledged;
//! - **chat**: members of a few lobby rooms, connected through the gateway so that both chat
//!   instances hold some of them, each sending messages and resending an unacknowledged one
//!   under the same `client_id`; a dropped connection reconnects through the gateway and
//!   resumes every room with `after=` the last id it saw.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use strata_chat::client::{ChatClient, Event, ws_url};
use strata_chat::protocol::{ClientFrame, ServerFrame};
use strata_core::wait::eventually;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long one HTTP request of the load may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a checkout keeps sending its key again before the test gives up on it.
const CHECKOUT_PATIENCE: Duration = Duration::from_secs(90);
/// How long a chat message waits for its acknowledgement before it is sent again.
const ACK_PATIENCE: Duration = Duration::from_secs(5);
/// A member that heard nothing for this long sends a `ping`…
const QUIET: Duration = Duration::from_secs(2);
/// …and one that heard nothing for this long takes the connection for dead and reconnects (a
/// killed instance sends no close: its connections just go silent).
const SILENT: Duration = Duration::from_secs(6);

/// Sizes of the load.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub readers: usize,
    pub read_pause: Duration,
    pub customers: usize,
    pub checkout_pause: Duration,
    pub rooms: usize,
    pub members_per_instance: usize,
    pub send_every: Duration,
}

impl Shape {
    /// About 200 reads, 20 checkouts and 16 chat messages a second: steady, well inside what
    /// a 2-core host running the whole cluster serves.
    pub const STEADY: Shape = Shape {
        readers: 4,
        read_pause: Duration::from_millis(20),
        customers: 6,
        checkout_pause: Duration::from_millis(200),
        rooms: 3,
        members_per_instance: 2,
        send_every: Duration::from_millis(250),
    };
}

/// What kind of traffic an outcome belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `GET /api/v1/products/{id}` (idempotent).
    Read,
    /// `POST /api/v1/orders` with an `Idempotency-Key` (idempotent by key).
    Checkout,
    /// `POST /api/v1/cart/items` (not idempotent: not retried by the gateway).
    CartAdd,
    /// A chat message sent, acknowledged or not.
    ChatSend,
    /// A chat WebSocket opened through the gateway.
    ChatConnect,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Read,
        Kind::Checkout,
        Kind::CartAdd,
        Kind::ChatSend,
        Kind::ChatConnect,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Checkout => "checkout",
            Kind::CartAdd => "cart_add",
            Kind::ChatSend => "chat_send",
            Kind::ChatConnect => "chat_connect",
        }
    }
}

/// One request's outcome: when it ended (ms since the load started) and whether it failed.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub at_ms: u64,
    pub kind: Kind,
    pub failure: Option<String>,
}

/// Every outcome of a run, in the order they ended.
#[derive(Clone)]
pub struct Record {
    started: Instant,
    started_wall: SystemTime,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
}

impl Record {
    fn new(started: Instant) -> Self {
        Self {
            started,
            started_wall: SystemTime::now(),
            outcomes: Arc::default(),
        }
    }

    /// A wall-clock time (the engine's, say) in ms since the load started.
    pub fn at_ms(&self, time: SystemTime) -> u64 {
        let since = time.duration_since(self.started_wall).unwrap_or_default();
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    /// Milliseconds since the load started.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn note(&self, kind: Kind, failure: Option<String>) {
        let at_ms = self.now_ms();
        self.outcomes.lock().unwrap().push(Outcome {
            at_ms,
            kind,
            failure,
        });
    }

    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().unwrap().clone()
    }
}

/// The shop seen through the gateway.
#[derive(Clone)]
pub struct Shop {
    pub base: String,
    http: reqwest::Client,
}

/// A customer of the load, with the orders acknowledged to them.
#[derive(Clone, Debug)]
pub struct Customer {
    pub id: i64,
    pub token: String,
}

impl Shop {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        Self {
            base: base.to_owned(),
            http,
        }
    }

    /// A request with the bearer token, answered with its status and JSON body (`Null` when
    /// the body is not JSON); `Err` when no response came.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value), String> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.map_err(|e| error_chain(&e))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| error_chain(&e))?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// A request that must succeed with a 2xx (set-up and checks, not load).
    pub async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Value {
        // Set-up and checks ride out a short outage: they are not what is measured.
        let mut last = String::new();
        for _ in 0..50 {
            match self.call(method.clone(), path, token, body, &[]).await {
                Ok((status, value)) if (200..300).contains(&status) => return value,
                Ok((status, value)) if status < 500 => panic!("{method} {path}: {status} {value}"),
                Ok((status, value)) => last = format!("{status} {value}"),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{method} {path}: {last}")
    }

    /// Logs in; returns the token.
    pub async fn log_in(&self, email: &str, password: &str) -> String {
        let body = json!({"email": email, "password": password});
        let answer = self
            .expect(reqwest::Method::POST, "/api/v1/sessions", None, Some(&body))
            .await;
        answer["token"].as_str().unwrap().to_owned()
    }

    /// Registers and logs in a new customer.
    pub async fn customer(&self, email: &str) -> Customer {
        let password = "cluster customer password";
        let body = json!({"email": email, "password": password, "display_name": email});
        let user = self
            .expect(reqwest::Method::POST, "/api/v1/users", None, Some(&body))
            .await;
        let token = self.log_in(email, password).await;
        Customer {
            id: user["id"].as_i64().unwrap(),
            token,
        }
    }
}

/// The error and its causes on one line ("connection refused" sits deep in reqwest's).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What the load leaves for the checks: every acknowledged order and chat message, and what
/// each chat member received.
#[derive(Debug, Default)]
pub struct Acknowledged {
    /// Order ids acknowledged to each customer (by customer id).
    pub orders: BTreeMap<i64, Vec<i64>>,
    /// `(room, client_id, id)` of every acknowledged chat message.
    pub messages: Vec<(String, String, i64)>,
    /// What each member received, per room: `(id, client_id)` in arrival order.
    pub received: Vec<BTreeMap<String, Vec<(i64, String)>>>,
    /// The chat instance each member was connected to first and last.
    pub member_instances: Vec<(String, String)>,
}

/// A running load; [`Load::stop`] ends it and returns what it acknowledged.
pub struct Load {
    pub record: Record,
    stop: watch::Sender<bool>,
    readers: JoinSet<()>,
    checkouts: JoinSet<(i64, Vec<i64>)>,
    members: JoinSet<MemberLog>,
    quiet: Arc<AtomicUsize>,
    targets: watch::Sender<Option<BTreeMap<String, i64>>>,
}

/// The test's fixtures in the shop: the product every checkout buys and its stock at start.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub product: i64,
    pub initial_stock: i64,
    pub customers: Vec<Customer>,
    pub admin_token: String,
    pub rooms: Vec<String>,
    /// Anchor rooms whose WebSocket lands on each chat instance, `members_per_instance` each.
    pub anchors: Vec<String>,
}

impl Fixture {
    /// Creates the product, the customers, and finds anchor rooms on both chat instances.
    pub async fn prepare(shop: &Shop, shape: Shape, admin: (&str, &str)) -> Fixture {
        let admin_token = shop.log_in(admin.0, admin.1).await;
        let initial_stock = 1_000_000;
        let product = shop
            .expect(
                reqwest::Method::POST,
                "/api/v1/products",
                Some(&admin_token),
                Some(&json!({
                    "sku": "CLUSTER-1", "name": "Cluster test widget", "category": "home",
                    "price_cents": 1000, "stock": initial_stock,
                })),
            )
            .await["id"]
            .as_i64()
            .unwrap();
        let mut customers = Vec::new();
        for i in 0..shape.customers {
            customers.push(shop.customer(&format!("customer{i}@cluster.test")).await);
        }
        let rooms = (0..shape.rooms)
            .map(|i| format!("lobby-load-{i}"))
            .collect();
        let anchors = anchors(&shop.base, &admin_token, shape.members_per_instance).await;
        Fixture {
            product,
            initial_stock,
            customers,
            admin_token,
            rooms,
            anchors,
        }
    }
}

/// Rooms whose WebSocket the gateway pins to each chat instance, `per_instance` of each, in
/// instance order (the load's members connect with these, so both instances hold members).
async fn anchors(base: &str, token: &str, per_instance: usize) -> Vec<String> {
    let mut by_instance: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for k in 0..64 {
        let room = format!("lobby-anchor-{k}");
        let mut client = ChatClient::connect(&ws_url(base, Some(token), Some(&room), None))
            .await
            .unwrap();
        let instance = loop {
            match client.next().await.unwrap() {
                Event::Frame(ServerFrame::Ready { instance, .. }) => break instance,
                Event::Frame(_) => {}
                Event::Closed(code) => panic!("chat closed before ready: {code:?}"),
            }
        };
        client.close().await;
        let rooms = by_instance.entry(instance).or_default();
        if rooms.len() < per_instance {
            rooms.push(room);
        }
        if by_instance.len() == 2 && by_instance.values().all(|r| r.len() == per_instance) {
            return by_instance.into_values().flatten().collect();
        }
    }
    panic!("64 rooms did not spread over two chat instances: {by_instance:?}")
}

impl Load {
    /// Starts the load on `shop` with the fixture's customers, product and rooms.
    pub fn start(shop: &Shop, fixture: &Fixture, shape: Shape) -> Load {
        let record = Record::new(Instant::now());
        let (stop, stopped) = watch::channel(false);
        let (targets, target_rx) = watch::channel(None);
        let mut readers = JoinSet::new();
        for _ in 0..shape.readers {
            readers.spawn(read_loop(
                shop.clone(),
                fixture.product,
                shape.read_pause,
                record.clone(),
                stopped.clone(),
            ));
        }
        let mut checkouts = JoinSet::new();
        for customer in &fixture.customers {
            checkouts.spawn(checkout_loop(
                shop.clone(),
                customer.clone(),
                fixture.product,
                shape.checkout_pause,
                record.clone(),
                stopped.clone(),
            ));
        }
        let mut members = JoinSet::new();
        let quiet = Arc::new(AtomicUsize::new(0));
        for (index, anchor) in fixture.anchors.iter().enumerate() {
            members.spawn(
                Member {
                    index,
                    base: shop.base.clone(),
                    token: fixture.admin_token.clone(),
                    anchor: anchor.clone(),
                    rooms: fixture.rooms.clone(),
                    send_every: shape.send_every,
                    record: record.clone(),
                    quiet: quiet.clone(),
                }
                .run(stopped.clone(), target_rx.clone()),
            );
        }
        Load {
            record,
            stop,
            readers,
            checkouts,
            members,
            quiet,
            targets,
        }
    }

    /// Stops sending, lets every checkout finish (acknowledged), then lets every chat member
    /// catch up with its rooms up to what the store holds, and returns what was acknowledged.
    pub async fn stop(mut self, shop: &Shop, fixture: &Fixture) -> Acknowledged {
        self.stop.send_replace(true);
        while self.readers.join_next().await.is_some() {}
        let mut acknowledged = Acknowledged::default();
        while let Some(done) = self.checkouts.join_next().await {
            let (customer, orders) = done.unwrap();
            acknowledged.orders.insert(customer, orders);
        }
        // Every member stops sending once its last message is acknowledged; when all have,
        // the rooms' last ids are final, and each member reads until it has them.
        let members = self.members.len();
        let quiet = self.quiet.clone();
        eventually(
            Duration::from_secs(120),
            "every chat message acknowledged",
            || {
                let quiet = quiet.load(Ordering::SeqCst);
                async move { (quiet == members).then_some(()) }
            },
        )
        .await;
        let mut last_ids = BTreeMap::new();
        for room in &fixture.rooms {
            let history = history(shop, &fixture.admin_token, room).await;
            last_ids.insert(room.clone(), history.last().map_or(0, |m| m.0));
        }
        self.targets.send_replace(Some(last_ids));
        while let Some(done) = self.members.join_next().await {
            let log = done.unwrap();
            acknowledged.messages.extend(log.acked);
            acknowledged
                .member_instances
                .push((log.first_instance, log.last_instance));
            acknowledged.received.push(log.received);
        }
        acknowledged
    }
}

/// Reads the test product until stopped.
async fn read_loop(
    shop: Shop,
    product: i64,
    pause: Duration,
    record: Record,
    stopped: watch::Receiver<bool>,
) {
    let path = format!("/api/v1/products/{product}");
    while !*stopped.borrow() {
        let outcome = shop
            .call(reqwest::Method::GET, &path, None, None, &[])
            .await;
        record.note(Kind::Read, failure(&outcome));
        tokio::time::sleep(pause).await;
    }
}

/// `None` for a 2xx answer, else what went wrong.
fn failure(outcome: &Result<(u16, Value), String>) -> Option<String> {
    match outcome {
        Ok((status, _)) if (200..300).contains(status) => None,
        Ok((status, body)) => Some(format!("{status} {}", body["error"]["code"])),
        Err(e) => Some(e.clone()),
    }
}

/// One customer buying the test product again and again until stopped: adds one unit to the
/// cart, then checks out with a fresh key, sent again until the order is acknowledged (a
/// stopped load still finishes the checkout it began). Returns the acknowledged order ids.
async fn checkout_loop(
    shop: Shop,
    customer: Customer,
    product: i64,
    pause: Duration,
    record: Record,
    stopped: watch::Receiver<bool>,
) -> (i64, Vec<i64>) {
    let mut orders = Vec::new();
    let token = Some(customer.token.as_str());
    let item = json!({"product_id": product, "quantity": 1});
    let mut n = 0;
    while !*stopped.borrow() {
        let added = shop
            .call(
                reqwest::Method::POST,
                "/api/v1/cart/items",
                token,
                Some(&item),
                &[],
            )
            .await;
        let added_failure = failure(&added);
        record.note(Kind::CartAdd, added_failure.clone());
        if added_failure.is_some() {
            tokio::time::sleep(pause).await;
            continue;
        }
        n += 1;
        let key = format!("cluster-{}-{n}", customer.id);
        let began = Instant::now();
        loop {
            let outcome = shop
                .call(
                    reqwest::Method::POST,
                    "/api/v1/orders",
                    token,
                    None,
                    &[("Idempotency-Key", &key)],
                )
                .await;
            let why = failure(&outcome);
            record.note(Kind::Checkout, why.clone());
            match (why, outcome) {
                (None, Ok((_, order))) => {
                    orders.push(order["id"].as_i64().unwrap());
                    break;
                }
                (Some(why), _) => {
                    assert!(
                        began.elapsed() < CHECKOUT_PATIENCE,
                        "checkout {key} still failing after {CHECKOUT_PATIENCE:?}: {why}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                (None, Err(_)) => unreachable!("no failure means an answer"),
            }
        }
        tokio::time::sleep(pause).await;
    }
    (customer.id, orders)
}

/// A room's history from the store: `(id, client_id)` in id order.
pub async fn history(shop: &Shop, token: &str, room: &str) -> Vec<(i64, String)> {
    let mut messages = Vec::new();
    let mut after = 0;
    loop {
        let page = shop
            .expect(
                reqwest::Method::GET,
                &format!("/api/v1/chat/rooms/{room}/messages?after={after}&limit=500"),
                Some(token),
                None,
            )
            .await;
        for m in page["messages"].as_array().unwrap() {
            // History names the per-room id `id`, as the WebSocket's `message` frame does.
            messages.push((
                m["id"].as_i64().unwrap(),
                m["client_id"].as_str().unwrap().to_owned(),
            ));
        }
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => return messages,
        }
    }
}

/// One chat member: a WebSocket through the gateway (anchored on a room pinned to one chat
/// instance) joined to every load room, sending a message every `send_every` to the rooms in
/// turn, one unacknowledged message at a time.
struct Member {
    index: usize,
    base: String,
    token: String,
    anchor: String,
    rooms: Vec<String>,
    send_every: Duration,
    record: Record,
    /// Members that stopped sending and have every message acknowledged.
    quiet: Arc<AtomicUsize>,
}

/// What a member saw.
struct MemberLog {
    acked: Vec<(String, String, i64)>,
    received: BTreeMap<String, Vec<(i64, String)>>,
    first_instance: String,
    last_instance: String,
}

/// A message sent and not yet acknowledged.
struct Pending {
    room: String,
    client_id: String,
    /// When to send it again, and why it would be.
    due: Instant,
    why: String,
}

impl Member {
    async fn run(
        self,
        stopped: watch::Receiver<bool>,
        mut targets: watch::Receiver<Option<BTreeMap<String, i64>>>,
    ) -> MemberLog {
        let mut log = MemberLog {
            acked: Vec::new(),
            received: self.rooms.iter().map(|r| (r.clone(), Vec::new())).collect(),
            first_instance: String::new(),
            last_instance: String::new(),
        };
        let mut pending: Option<Pending> = None;
        let mut sent = 0u64;
        let mut quiet_noted = false;
        // Since when the member has only been reading (stopped, everything acknowledged).
        let mut settling: Option<Instant> = None;
        let give_up = Instant::now() + Duration::from_secs(600);
        'connection: loop {
            assert!(
                Instant::now() < give_up,
                "member {} never settled",
                self.index
            );
            let Some(mut client) = self.connect(&mut log).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if let Some(p) = &mut pending {
                // Resent on the new connection with the same client id: stored at most once.
                p.due = Instant::now();
                p.why = "connection lost".into();
            }
            let mut tick = tokio::time::interval(self.send_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut heard = Instant::now();
            let mut pinged = Instant::now();
            loop {
                if pending.is_none() && *stopped.borrow() {
                    if !quiet_noted {
                        quiet_noted = true;
                        self.quiet.fetch_add(1, Ordering::SeqCst);
                    }
                    let done = targets.borrow().as_ref().map(|targets| {
                        targets.iter().all(|(room, last)| {
                            log.received[room].last().map_or(0, |m| m.0) >= *last
                        })
                    });
                    // Bounded: a member still missing messages after a minute returns what it
                    // has, and the checks say what is missing.
                    let settled = *settling.get_or_insert_with(Instant::now);
                    if done == Some(true) || settled.elapsed() > Duration::from_secs(60) {
                        client.close().await;
                        return log;
                    }
                }
                tokio::select! {
                    _ = tick.tick() => {
                        if heard.elapsed() >= SILENT {
                            self.record.note(Kind::ChatConnect, Some("silent connection".into()));
                            continue 'connection;
                        }
                        if heard.elapsed() >= QUIET && pinged.elapsed() >= QUIET {
                            pinged = Instant::now();
                            if client.send(&ClientFrame::Ping).await.is_err() {
                                continue 'connection;
                            }
                        }
                        if let Some(p) = &mut pending {
                            if Instant::now() >= p.due {
                                let frame = ClientFrame::Send {
                                    room: p.room.clone(),
                                    client_id: p.client_id.clone(),
                                    body: format!("message {}", p.client_id),
                                };
                                self.record.note(Kind::ChatSend, Some(p.why.clone()));
                                p.due = Instant::now() + ACK_PATIENCE;
                                p.why = "no ack within 5 s".into();
                                if client.send(&frame).await.is_err() {
                                    self.record.note(Kind::ChatSend, Some("send failed".into()));
                                    continue 'connection;
                                }
                            }
                        } else if !*stopped.borrow() {
                            let room = self.rooms[(sent as usize) % self.rooms.len()].clone();
                            sent += 1;
                            let client_id = format!("m{}-{sent}", self.index);
                            let frame = ClientFrame::Send {
                                room: room.clone(),
                                client_id: client_id.clone(),
                                body: format!("message {client_id}"),
                            };
                            let due = Instant::now() + ACK_PATIENCE;
                            let why = "no ack within 5 s".into();
                            pending = Some(Pending { room, client_id, due, why });
                            if client.send(&frame).await.is_err() {
                                self.record.note(Kind::ChatSend, Some("send failed".into()));
                                continue 'connection;
                            }
                        }
                    }
                    _ = targets.changed() => {}
                    event = client.next() => match event {
                        Ok(Event::Frame(frame)) => {
                            heard = Instant::now();
                            self.on_frame(frame, &mut log, &mut pending);
                        }
                        Ok(Event::Closed(code)) => {
                            self.record.note(Kind::ChatConnect, Some(format!("closed {code:?}")));
                            continue 'connection;
                        }
                        Err(e) => panic!("member {}: {e}", self.index),
                    },
                }
            }
        }
    }

    /// Opens the WebSocket through the gateway, waits for `ready` and joins every room after
    /// the last id received in it.
    async fn connect(&self, log: &mut MemberLog) -> Option<ChatClient> {
        let url = ws_url(&self.base, Some(&self.token), Some(&self.anchor), None);
        let connected = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let mut client = ChatClient::connect(&url).await.map_err(|e| e.to_string())?;
            loop {
                match client.next().await.map_err(|e| e.to_string())? {
                    Event::Frame(ServerFrame::Ready { instance, .. }) => {
                        return Ok((client, instance));
                    }
                    Event::Frame(_) => {}
                    Event::Closed(code) => return Err(format!("closed {code:?} before ready")),
                }
            }
        })
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()));
        let (mut client, instance) = match connected {
            Ok(connected) => connected,
            Err(e) => {
                self.record.note(Kind::ChatConnect, Some(e));
                return None;
            }
        };
        self.record.note(Kind::ChatConnect, None);
        if log.first_instance.is_empty() {
            log.first_instance.clone_from(&instance);
        }
        log.last_instance = instance;
        for room in &self.rooms {
            let after = log.received[room].last().map_or(0, |m| m.0);
            let join = ClientFrame::Join {
                room: room.clone(),
                after: Some(after),
            };
            if client.send(&join).await.is_err() {
                return None;
            }
        }
        Some(client)
    }

    fn on_frame(&self, frame: ServerFrame, log: &mut MemberLog, pending: &mut Option<Pending>) {
        match frame {
            ServerFrame::Message {
                room,
                id,
                client_id,
                ..
            } => {
                if let Some(received) = log.received.get_mut(&room) {
                    received.push((id, client_id));
                }
            }
            ServerFrame::Ack {
                room,
                client_id,
                id,
                ..
            } if pending.as_ref().is_some_and(|p| p.client_id == client_id) => {
                *pending = None;
                self.record.note(Kind::ChatSend, None);
                log.acked.push((room, client_id, id));
            }
            ServerFrame::Error {
                code,
                client_id: Some(client_id),
                ..
            } => {
                if let Some(p) = pending.as_mut().filter(|p| p.client_id == client_id) {
                    // Refused (`unavailable`: the store is down): sent again a little later.
                    p.due = Instant::now() + Duration::from_millis(300);
                    p.why = code;
                }
            }
            _ => {}
        }
    }
}
