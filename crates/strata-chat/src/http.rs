//! The chat routes: the WebSocket (`GET /api/v1/chat/ws`), room history
//! (`GET /api/v1/chat/rooms/{id}/messages?after=&limit=`), presence
//! (`GET /api/v1/chat/presence?room=` or `?users=1,2`) and the agents' list of support rooms
//! (`GET /api/v1/chat/rooms`).
//!
//! Every route takes the api's token as `Authorization: Bearer`, or a browser's session
//! cookie ([`strata_core::auth::SESSION_COOKIE`]) so that pages' scripts never hold the
//! token; the WebSocket also takes it as `token=` or in its first frame.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use strata_cache::Cache;
use strata_core::auth::{UserRole, session_cookie};
use strata_store::{ChatMessage, SupportRoom};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use utoipa::ToSchema;

use crate::ChatError;
use crate::auth::{self, User};
use crate::connection::{self, Start};
use crate::hub::{Hub, presence_key};
use crate::room::RoomId;

/// Most history messages per page.
const MAX_PAGE: u32 = 500;
/// Most users per presence query.
const MAX_USERS: usize = 100;
/// Most rooms in one answer of the support room list, and how many when not asked.
const MAX_ROOMS: u32 = 200;
const DEFAULT_ROOMS: u32 = 50;

pub(crate) fn routes(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/api/v1/chat/ws", get(websocket))
        .route("/api/v1/chat/rooms/{id}/messages", get(history))
        .route("/api/v1/chat/presence", get(presence))
        .route("/api/v1/chat/rooms", get(support_rooms))
        .with_state(hub)
}

/// The caller named by `Authorization: Bearer <jwt>`, or else by the session cookie.
fn bearer(hub: &Hub, headers: &HeaderMap) -> Result<User, ChatError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .or_else(|| session_cookie(headers))
        .ok_or(ChatError::Unauthorized(
            "missing bearer token or session cookie",
        ))?;
    auth::verify(&hub.verifier, token).map_err(|e| ChatError::Unauthorized(e.0))
}

/// True when a handshake's `Origin`, if it has one, names the host it was sent to. Browsers
/// send `Origin` with every WebSocket handshake and send the site's cookies with it whatever
/// page opened it (WebSockets are not bound by CORS): a handshake that the session cookie
/// authenticates must come from one of this site's own pages, or any other site could open
/// a chat connection as its visitor (cross-site WebSocket hijacking). Clients that are not
/// browsers send no `Origin` and hold their token themselves.
fn same_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(axum::http::uri::Authority::as_str));
    let authority = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"))
    });
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// The room `raw` names, when `user` may enter it now.
async fn room_for(hub: &Hub, user: User, raw: &str) -> Result<RoomId, ChatError> {
    let room: RoomId = raw
        .parse()
        .map_err(|e: crate::room::UnknownRoom| ChatError::UnknownRoom(e.0))?;
    let admitted = auth::admitted(&hub.store, user, &room)
        .await
        .map_err(|e| ChatError::Unavailable(e.to_string()))?;
    if !admitted {
        return Err(ChatError::Forbidden(format!("you may not read {room}")));
    }
    Ok(room)
}

#[derive(Deserialize)]
struct WsQuery {
    room: Option<String>,
    token: Option<String>,
    after: Option<i64>,
    watch: Option<String>,
}

/// Upgrades to a WebSocket. The token may come in the URL (`token=`), in the session cookie
/// (from a page of this site only: see [`same_origin`]) or as the first frame; with `room=`
/// the connection joins that room at once (from `after=` when given).
#[utoipa::path(
    get,
    path = "/api/v1/chat/ws",
    tag = "chat",
    summary = "Open a chat connection (WebSocket)",
    description = "A WebSocket upgrade (`Connection: Upgrade`, `Upgrade: websocket`, version 13); \
                   the frames are described in `docs/chat-protocol.md`. The token comes in \
                   `token=`, in the `strata_session` cookie (a browser's; refused with 403 \
                   when the handshake's `Origin` is another site) or in the first frame; \
                   `room=` joins a room at once, from `after=` (the last message id seen) when \
                   given.",
    params(
        ("room" = Option<String>, Query, description = "A room to join at once: `support-<user id>` or `lobby-<name>`"),
        ("token" = Option<String>, Query, description = "The session token, when not sent as the first frame"),
        ("after" = Option<i64>, Query, description = "Resume: the last message id already seen"),
        ("watch" = Option<String>, Query, description = "`support`: an `activity` frame for every new message of any support room (support and admin accounts)"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade, or a bad query", body = strata_core::http::ErrorBody),
        (status = 401, description = "The token is missing or invalid", body = strata_core::http::ErrorBody),
        (status = 403, description = "The room is not the caller's, or the session cookie came from another site's page", body = strata_core::http::ErrorBody),
        (status = 404, description = "No such room", body = strata_core::http::ErrorBody),
        (status = 503, description = "The instance is draining: connect again", body = strata_core::http::ErrorBody),
    )
)]
async fn websocket(
    State(hub): State<Arc<Hub>>,
    query: Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    mut request: Request,
) -> Result<Response, ChatError> {
    // A bad query is answered with the JSON problem body, as every other refusal.
    let Query(query) = query.map_err(|e| ChatError::BadRequest("invalid_query", e.body_text()))?;
    let watch_support = match query.watch.as_deref() {
        None => false,
        Some("support") => true,
        Some(_) => {
            return Err(ChatError::BadRequest(
                "invalid_query",
                "watch: expected `support`".into(),
            ));
        }
    };
    if hub.draining.is_cancelled() {
        return Err(ChatError::Unavailable("draining".into()));
    }
    let headers = request.headers();
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| upgrade && version_ok)
    else {
        return Err(ChatError::BadRequest(
            "websocket_required",
            "this route takes a WebSocket upgrade (version 13)".into(),
        ));
    };
    let accept = derive_accept_key(key.as_bytes());
    let token = match (&query.token, session_cookie(headers)) {
        (Some(token), _) => Some(token.as_str()),
        (None, Some(cookie)) => {
            if !same_origin(headers, request.uri()) {
                return Err(ChatError::Forbidden(
                    "another site's page may not open a chat connection with this site's \
                     session cookie"
                        .into(),
                ));
            }
            Some(cookie)
        }
        (None, None) => None,
    };
    let user = match token {
        Some(token) => {
            Some(auth::verify(&hub.verifier, token).map_err(|e| ChatError::Unauthorized(e.0))?)
        }
        None => None,
    };
    let room = match (&query.room, user) {
        (Some(raw), Some(user)) => Some((room_for(&hub, user, raw).await?, query.after)),
        (Some(raw), None) => Some((
            raw.parse::<RoomId>()
                .map_err(|e| ChatError::UnknownRoom(e.0))?,
            query.after,
        )),
        (None, _) => None,
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let config = WebSocketConfig::default()
        .read_buffer_size(hub.limits.read_buffer_bytes)
        .write_buffer_size(0)
        .max_message_size(Some(hub.limits.max_frame_bytes))
        .max_frame_size(Some(hub.limits.max_frame_bytes));
    let task_hub = hub.clone();
    hub.tracker.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "upgrade failed");
                return;
            }
        };
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        // A room from the URL is checked against the token once it is known.
        let start = Start {
            user,
            room,
            watch_support,
        };
        connection::run(task_hub, ws, start).await;
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    Ok(response)
}

#[derive(Deserialize)]
struct HistoryQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

/// A page of history. Its messages have the fields of the `message` frame (`id`, `sender`,
/// `sender_name`, `sent_at`…), not the store's: one thing has one name on every path.
#[derive(Serialize, ToSchema)]
#[schema(as = ChatHistoryPage)]
pub(crate) struct HistoryPage {
    room: String,
    messages: Vec<HistoryMessage>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<i64>,
}

/// A stored message as history shows it: the `message` frame without its `type`.
#[derive(Serialize, ToSchema)]
#[schema(as = ChatMessage)]
pub(crate) struct HistoryMessage {
    room: String,
    id: i64,
    sender: i64,
    /// The sender's display name; empty when no account has the sender's id.
    sender_name: String,
    client_id: String,
    body: String,
    sent_at: String,
}

impl From<&ChatMessage> for HistoryMessage {
    fn from(message: &ChatMessage) -> Self {
        Self {
            room: message.room_id.clone(),
            id: message.seq,
            sender: message.sender_id,
            sender_name: message.sender_name.clone(),
            client_id: message.client_id.clone(),
            body: message.body.clone(),
            sent_at: crate::hub::sent_at(message),
        }
    }
}

/// A room's stored messages after an id, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/chat/rooms/{id}/messages",
    tag = "chat",
    summary = "Read a room's history",
    params(
        ("id" = String, Path, description = "The room: `support-<user id>` or `lobby-<name>`"),
        ("after" = Option<i64>, Query, description = "Messages after this id (default 0: from the first)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Most messages (default 100)"),
    ),
    responses(
        (status = 200, description = "A page of messages; `next_after` is absent on the last page", body = HistoryPage),
        (status = 400, description = "A bad query", body = strata_core::http::ErrorBody),
        (status = 401, description = "The token (bearer or session cookie) is missing or invalid", body = strata_core::http::ErrorBody),
        (status = 403, description = "The room is not the caller's", body = strata_core::http::ErrorBody),
        (status = 404, description = "No such room", body = strata_core::http::ErrorBody),
        (status = 503, description = "The store is unavailable", body = strata_core::http::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn history(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HistoryPage>, ChatError> {
    let user = bearer(&hub, &headers)?;
    let Query(query) = query.map_err(|e| ChatError::BadRequest("invalid_query", e.body_text()))?;
    let room = room_for(&hub, user, &id).await?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ChatError::BadRequest(
            "invalid_query",
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    let after = query.after.unwrap_or(0).max(0);
    let messages = hub
        .store
        .chat()
        .after(room.as_str(), after, limit)
        .await
        .map_err(|e| ChatError::Unavailable(e.to_string()))?;
    let next_after = (messages.len() == limit as usize)
        .then(|| messages.last().map(|m| m.seq))
        .flatten();
    Ok(Json(HistoryPage {
        room: room.to_string(),
        messages: messages.iter().map(HistoryMessage::from).collect(),
        next_after,
    }))
}

#[derive(Deserialize)]
struct PresenceQuery {
    room: Option<String>,
    users: Option<String>,
}

/// Whether a user is connected to any chat instance.
#[derive(Serialize, ToSchema)]
#[schema(as = ChatPresence)]
pub(crate) struct Presence {
    user: i64,
    online: bool,
}

/// The presence of a room's members or of listed users.
#[derive(Serialize, ToSchema)]
#[schema(as = ChatPresenceList)]
pub(crate) struct PresenceList {
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<String>,
    users: Vec<Presence>,
}

/// Presence of a room's members (`room=`, members only) or of listed users (`users=1,2`).
#[utoipa::path(
    get,
    path = "/api/v1/chat/presence",
    tag = "chat",
    summary = "Who is online",
    description = "Either `room=` (its members; the caller must be one) or `users=` (up to 100 \
                   ids, comma-separated).",
    params(
        ("room" = Option<String>, Query, min_length = 1, description = "A room the caller may read"),
        ("users" = Option<String>, Query, min_length = 1, description = "User ids, comma-separated, at most 100"),
    ),
    responses(
        (status = 200, description = "Presence of each user", body = PresenceList),
        (status = 400, description = "Neither or both of `room` and `users`, or a bad list", body = strata_core::http::ErrorBody),
        (status = 401, description = "The token (bearer or session cookie) is missing or invalid", body = strata_core::http::ErrorBody),
        (status = 403, description = "The room is not the caller's", body = strata_core::http::ErrorBody),
        (status = 404, description = "No such room", body = strata_core::http::ErrorBody),
        (status = 503, description = "The store is unavailable", body = strata_core::http::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn presence(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    query: Result<Query<PresenceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PresenceList>, ChatError> {
    let caller = bearer(&hub, &headers)?;
    let Query(query) = query.map_err(|e| ChatError::BadRequest("invalid_query", e.body_text()))?;
    let (room, users) = match (query.room, query.users) {
        (Some(raw), None) => {
            let room = room_for(&hub, caller, &raw).await?;
            let users = hub
                .store
                .chat()
                .members(room.as_str())
                .await
                .map_err(|e| ChatError::Unavailable(e.to_string()))?;
            (Some(room.to_string()), users)
        }
        (None, Some(list)) => {
            let users: Result<Vec<i64>, _> = list.split(',').map(|u| u.trim().parse()).collect();
            let users = users.map_err(|_| {
                ChatError::BadRequest(
                    "invalid_query",
                    "users is a comma-separated list of ids".into(),
                )
            })?;
            if users.len() > MAX_USERS {
                return Err(ChatError::BadRequest(
                    "invalid_query",
                    format!("at most {MAX_USERS} users"),
                ));
            }
            (None, users)
        }
        _ => {
            return Err(ChatError::BadRequest(
                "invalid_query",
                "give either room= or users=".into(),
            ));
        }
    };
    let mut out = Vec::with_capacity(users.len());
    for user in users {
        let online =
            hub.is_local(user) || matches!(hub.cache.get(&presence_key(user)).await, Ok(Some(_)));
        out.push(Presence { user, online });
    }
    Ok(Json(PresenceList { room, users: out }))
}

#[derive(Deserialize)]
struct RoomsQuery {
    limit: Option<u32>,
}

/// One support room as an agent's console lists it.
#[derive(Serialize, ToSchema)]
#[schema(as = ChatSupportRoom)]
pub(crate) struct SupportRoomView {
    /// The room id, `support-<customer id>`.
    room: String,
    /// The customer's account id.
    customer: i64,
    /// The customer's display name; empty when no account has the id.
    customer_name: String,
    /// Whether the customer is connected to chat now.
    customer_online: bool,
    /// Messages others sent above the caller's read marker (the `read` frame moves it).
    unread: i64,
    /// The room's newest message; absent when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_message: Option<HistoryMessage>,
}

/// The support rooms, most recently active first.
#[derive(Serialize, ToSchema)]
#[schema(as = ChatSupportRoomList)]
pub(crate) struct SupportRoomList {
    rooms: Vec<SupportRoomView>,
}

/// The support rooms for the agents' console (support and admin accounts only).
#[utoipa::path(
    get,
    path = "/api/v1/chat/rooms",
    tag = "chat",
    summary = "List the support rooms (agents)",
    description = "Support and admin accounts only. Every customer's support room, most \
                   recently active first (rooms without a message last): its customer and \
                   whether they are online, its newest message, and how many messages others \
                   sent since the caller's read marker (moved by the WebSocket's `read` frame).",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Most rooms (default 50)"),
    ),
    responses(
        (status = 200, description = "The support rooms", body = SupportRoomList),
        (status = 400, description = "A bad query", body = strata_core::http::ErrorBody),
        (status = 401, description = "The token (bearer or session cookie) is missing or invalid", body = strata_core::http::ErrorBody),
        (status = 403, description = "The caller is not a support or admin account", body = strata_core::http::ErrorBody),
        (status = 503, description = "The store is unavailable", body = strata_core::http::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn support_rooms(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    query: Result<Query<RoomsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SupportRoomList>, ChatError> {
    let caller = bearer(&hub, &headers)?;
    let Query(query) = query.map_err(|e| ChatError::BadRequest("invalid_query", e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_ROOMS);
    if !(1..=MAX_ROOMS).contains(&limit) {
        return Err(ChatError::BadRequest(
            "invalid_query",
            format!("limit must be 1 to {MAX_ROOMS}"),
        ));
    }
    let unavailable = |e: strata_store::StoreError| ChatError::Unavailable(e.to_string());
    let role = hub
        .store
        .users()
        .role(caller.id)
        .await
        .map_err(unavailable)?;
    if !matches!(role, Some(UserRole::Support | UserRole::Admin)) {
        return Err(ChatError::Forbidden(
            "the support room list is for support and admin accounts".into(),
        ));
    }
    let rooms = hub
        .store
        .chat()
        .support_rooms(caller.id, limit)
        .await
        .map_err(unavailable)?;
    let customers: Vec<i64> = rooms
        .iter()
        .map(|r| {
            r.room_id
                .parse::<RoomId>()
                .ok()
                .and_then(|id| id.customer())
                .unwrap_or(0)
        })
        .collect();
    let online = online(&hub, &customers).await;
    let rooms = rooms
        .into_iter()
        .zip(customers)
        .zip(online)
        .map(|((room, customer), customer_online)| {
            let SupportRoom {
                room_id,
                customer_name,
                unread,
                last,
            } = room;
            SupportRoomView {
                room: room_id,
                customer,
                customer_name,
                customer_online,
                unread,
                last_message: last.as_ref().map(HistoryMessage::from),
            }
        })
        .collect();
    Ok(Json(SupportRoomList { rooms }))
}

/// Whether each of `users` is connected to some chat instance: here, or with a live presence
/// entry (one cache round trip for all). A cache that fails shows them offline.
async fn online(hub: &Hub, users: &[i64]) -> Vec<bool> {
    let keys: Vec<String> = users.iter().map(|&u| presence_key(u)).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let entries = hub.cache.get_many(&keys).await.unwrap_or_default();
    users
        .iter()
        .enumerate()
        .map(|(i, &u)| hub.is_local(u) || entries.get(i).is_some_and(Option::is_some))
        .collect()
}

/// The chat role's part of the OpenAPI document: its HTTP endpoints (the WebSocket upgrade,
/// history, presence) and their schemas. The api serves it with its own at `/openapi.json`
/// when the binary hands it over (the gateway routes these paths to chat).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(websocket, history, presence, support_rooms),
    components(schemas(
        HistoryPage,
        HistoryMessage,
        Presence,
        PresenceList,
        SupportRoomView,
        SupportRoomList,
        strata_core::http::ErrorBody,
        strata_core::http::ErrorDetail
    )),
    tags((name = "chat", description = "Live support chat: the WebSocket, history, presence and the agents' room list (served by the chat instances)"))
)]
pub(crate) struct ChatDoc;
