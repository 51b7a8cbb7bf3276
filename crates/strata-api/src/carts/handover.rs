//! Moving local carts between api instances when the membership changes, and the internal
//! endpoints the instances call on each other.
//!
//! # Hand-over
//! When an instance's view changes, a task copies every cart it holds but no longer owns
//! (such a cart no longer changes here: a change checks ownership under the cart's lock) and
//! sends it, in batches, to its new owner (`POST /internal/carts/handover`). The owner logs
//! each cart it does not hold yet (one it holds is newer) and acknowledges once they are
//! durable; only then does the sender log the carts as gone. A crash anywhere in between
//! leaves a cart on both instances, never on none; the stale copy is sent again after a
//! restart and ignored. When nothing is left to send, the instance tells every member
//! (`POST /internal/carts/done`), which stop asking it for carts.
//!
//! # Pull
//! A request may reach a cart's new owner before the cart does. The owner then asks the
//! cart's owner in its previous view (`POST /internal/carts/pull`), which hands that one cart
//! over at once (or answers that it has none, and whether it has handed over everything).
//! Only then is the cart read or changed. A previous owner that cannot be reached makes the
//! request fail with 503 `cart_unavailable`, unless it has left the pool altogether.
//!
//! # Agreement
//! Every call carries the caller's view hash; an instance that sees another one reads the
//! pool again, and refuses to hand over or take in carts while the two views differ
//! (409), so carts only move between instances that agree on their owners.
//!
//! # Leaving
//! On shutdown a local-cart instance drains itself at the gateway, leaves itself out of its
//! view, and keeps serving until every cart it held was acknowledged by its new owner.
//!
//! # Not public
//! `/internal/` is in the gateway pools' default `internal_paths` (the public listener
//! answers 404), and with `carts.peers_token` set every call must carry it as a bearer token.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use strata_core::http::error_response;

use super::Carts;
use super::journal::{Line, OwnerKey};
use super::local::LocalCarts;
use super::peers::{Peers, parse_routing_key, routing_key};
use super::routing::Cluster;
use crate::ApiError;
use crate::state::AppState;

/// Carts per hand-over call.
const BATCH: usize = 512;
/// Pause before trying again after a failed hand-over.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// A cart line on the wire.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct WireLine {
    product_id: i64,
    quantity: u8,
    added_at: i64,
}

impl From<WireLine> for Line {
    fn from(w: WireLine) -> Self {
        Line {
            product_id: w.product_id,
            quantity: w.quantity,
            added_at: w.added_at,
        }
    }
}

/// Lines as sent.
pub(crate) fn wire_lines(lines: &[Line]) -> Vec<WireLine> {
    lines
        .iter()
        .map(|l| WireLine {
            product_id: l.product_id,
            quantity: l.quantity,
            added_at: l.added_at,
        })
        .collect()
}

/// An operation on one cart, run on its owner.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Op {
    /// The cart's lines.
    Lines,
    /// `CartRepo::add`.
    Add { product_id: i64, quantity: u32 },
    /// `CartRepo::set`.
    Set { product_id: i64, quantity: u32 },
    /// Merges an anonymous cart's lines into this (user's) cart.
    MergeInto { lines: Vec<WireLine> },
    /// Deletes the cart.
    Remove,
    /// Takes checked-out units off a user's cart.
    CheckedOut { sold: Vec<(i64, i64)> },
}

/// `POST /internal/carts/op`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OpCall {
    /// The caller's view.
    pub view: u64,
    /// The cart's routing key.
    pub owner: String,
    pub op: Op,
}

/// What an operation gave.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub(crate) enum Answer {
    Lines {
        lines: Option<Vec<WireLine>>,
    },
    Done,
    Merged {
        merged: usize,
        capped: usize,
        dropped: usize,
    },
    Removed {
        found: bool,
    },
    /// The cart rules refused the change.
    Refused {
        refusal: Refusal,
    },
    /// The called instance does not own the cart in its view.
    NotOwner,
}

/// A refusal of the cart rules, as sent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub(crate) enum Refusal {
    UnknownProduct { product_id: i64 },
    NotInCart { product_id: i64 },
    CartLimit { message: String },
}

/// `POST /internal/carts/handover`.
#[derive(Debug, Serialize, Deserialize)]
struct HandoverCall {
    view: u64,
    carts: Vec<(String, Vec<WireLine>)>,
}

/// `POST /internal/carts/pull` and `/done`.
#[derive(Debug, Serialize, Deserialize)]
struct PullCall {
    view: u64,
    /// The cart (pull), or the instance that is done (done).
    owner: String,
}

/// The answer of a pull.
#[derive(Debug, Serialize, Deserialize)]
struct PullAnswer {
    /// The cart was handed over (it is on the caller now).
    handed: bool,
    /// The called instance has handed over every cart it does not own in this view.
    done: bool,
}

/// The internal routes (answer 404 in shared mode and without peers).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/internal/carts/op", post(op))
        .route("/internal/carts/pull", post(pull_one))
        .route("/internal/carts/handover", post(take_in))
        .route("/internal/carts/done", post(done))
}

/// Why an internal call is refused, answered as the JSON error body.
struct Refused {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        error_response(self.status, self.code, self.message)
    }
}

/// The cluster and its peers, when this instance shares local carts.
fn cluster<'s>(
    state: &'s AppState,
    headers: &HeaderMap,
) -> Result<(&'s Cluster, &'s Arc<Peers>), Refused> {
    let not_found = || Refused {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: "no such route".into(),
    };
    let Carts::Local(cluster) = &state.carts else {
        return Err(not_found());
    };
    let Some(peers) = &cluster.peers else {
        return Err(not_found());
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !peers.admits(authorization) {
        return Err(Refused {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "the internal cart endpoints need the peers token".into(),
        });
    }
    Ok((&**cluster, peers))
}

fn bad_owner() -> Response {
    error_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "`owner`: expected u<user id> or 32 hex digits",
    )
}

fn views_differ() -> Response {
    error_response(
        StatusCode::CONFLICT,
        "views_differ",
        "the instances see different memberships of the pool",
    )
}

/// Parses a JSON body, answering 422 when it is not the expected one.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refused> {
    serde_json::from_slice(body).map_err(|e| Refused {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "invalid_body",
        message: e.to_string(),
    })
}

/// The cluster, its peers and the parsed body of an internal call, or why it is refused (no
/// peers here, a wrong token, a body that is not a `T`).
fn accept<'s, T: serde::de::DeserializeOwned>(
    state: &'s AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(&'s Cluster, &'s Arc<Peers>, T), Refused> {
    let (cluster, peers) = cluster(state, headers)?;
    Ok((cluster, peers, parse(body)?))
}

/// `POST /internal/carts/op`: runs an operation on a cart this instance owns.
async fn op(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (cluster, peers, call): (_, _, OpCall) = match accept(&state, &headers, &body) {
        Ok(accepted) => accepted,
        Err(refused) => return refused.into_response(),
    };
    let Some(owner) = parse_routing_key(&call.owner) else {
        return bad_owner();
    };
    peers.agree(call.view).await;
    if !peers.view().is_mine(owner) {
        return axum::Json(Answer::NotOwner).into_response();
    }
    let answer = match cluster.here(owner, &call.op).await {
        Ok(answer) => answer,
        Err(ApiError::CartMoved) => Answer::NotOwner,
        Err(ApiError::UnknownProduct(product_id)) => Answer::Refused {
            refusal: Refusal::UnknownProduct { product_id },
        },
        Err(ApiError::NotInCart(product_id)) => Answer::Refused {
            refusal: Refusal::NotInCart { product_id },
        },
        Err(ApiError::CartLimit(message)) => Answer::Refused {
            refusal: Refusal::CartLimit { message },
        },
        Err(e) => return e.into_response(),
    };
    axum::Json(answer).into_response()
}

/// `POST /internal/carts/pull`: hands one cart this instance holds but no longer owns to
/// its owner now.
async fn pull_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (cluster, peers, call): (_, _, PullCall) = match accept(&state, &headers, &body) {
        Ok(accepted) => accepted,
        Err(refused) => return refused.into_response(),
    };
    let Some(owner) = parse_routing_key(&call.owner) else {
        return bad_owner();
    };
    if !peers.agree(call.view).await {
        return views_differ();
    }
    let local = &cluster.local;
    let handed = match local.raw(owner) {
        Some(_) if local.owns(owner) => return views_differ(),
        Some(lines) => match send(peers, local, vec![(owner, lines)]).await {
            Ok(()) => true,
            Err(e) => {
                return ApiError::CartUnavailable(format!("cannot hand the cart over: {e}"))
                    .into_response();
            }
        },
        None => false,
    };
    let done = peers.pushed_view() == call.view;
    axum::Json(PullAnswer { handed, done }).into_response()
}

/// `POST /internal/carts/handover`: takes in carts this instance now owns.
async fn take_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (cluster, peers, call): (_, _, HandoverCall) = match accept(&state, &headers, &body) {
        Ok(accepted) => accepted,
        Err(refused) => return refused.into_response(),
    };
    if !peers.agree(call.view).await {
        return views_differ();
    }
    let mut carts = Vec::with_capacity(call.carts.len());
    for (owner, lines) in call.carts {
        let Some(owner) = parse_routing_key(&owner) else {
            return bad_owner();
        };
        if !cluster.local.owns(owner) {
            return views_differ();
        }
        carts.push((owner, lines.into_iter().map(Line::from).collect()));
    }
    match cluster.local.accept(carts).await {
        Ok(taken) => axum::Json(serde_json::json!({ "taken": taken })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /internal/carts/done`: an instance handed over every cart it does not own.
async fn done(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (_, peers, call): (_, _, PullCall) = match accept(&state, &headers, &body) {
        Ok(accepted) => accepted,
        Err(refused) => return refused.into_response(),
    };
    peers.agree(call.view).await;
    peers.settle(&call.owner, call.view);
    StatusCode::NO_CONTENT.into_response()
}

/// Asks `previous` (the owner of `owner`'s cart in the previous view) to hand it over.
///
/// # Errors
/// [`ApiError::CartUnavailable`] when it cannot be asked (and is still in the pool) or the
/// views differ.
pub(crate) async fn pull(peers: &Peers, previous: &str, owner: OwnerKey) -> Result<(), ApiError> {
    let view = peers.view().hash;
    let call = PullCall {
        view,
        owner: routing_key(owner),
    };
    let url = format!("http://{previous}/internal/carts/pull");
    let sent = peers
        .authorized(peers.client().post(&url))
        .json(&call)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) if e.is_connect() && !peers.view().in_pool(previous) => {
            // Gone from the pool and not listening: nothing to ask any more.
            peers.settle(previous, view);
            return Ok(());
        }
        Err(e) => {
            return Err(ApiError::CartUnavailable(format!(
                "the cart's previous instance {previous}: {e}"
            )));
        }
    };
    if !response.status().is_success() {
        return Err(ApiError::CartUnavailable(format!(
            "the cart's previous instance {previous} answered {}",
            response.status()
        )));
    }
    let answer: PullAnswer = response
        .json()
        .await
        .map_err(|e| ApiError::CartUnavailable(format!("{previous}: {e}")))?;
    if answer.done {
        peers.settle(previous, view);
    }
    Ok(())
}

/// Sends `carts` (held here, not owned) to their owners, then forgets them.
///
/// # Errors
/// The first failed call; the carts not acknowledged stay here.
async fn send(
    peers: &Peers,
    local: &LocalCarts,
    carts: Vec<(OwnerKey, Vec<Line>)>,
) -> Result<(), String> {
    let view = peers.view();
    let mut by_owner: std::collections::BTreeMap<String, Vec<(OwnerKey, Vec<Line>)>> =
        std::collections::BTreeMap::new();
    for (owner, lines) in carts {
        let Some(address) = view.owner(owner) else {
            return Err("no member to hand carts to".into());
        };
        by_owner
            .entry(address.to_owned())
            .or_default()
            .push((owner, lines));
    }
    for (address, carts) in by_owner {
        let call = HandoverCall {
            view: view.hash,
            carts: carts
                .iter()
                .map(|(o, l)| (routing_key(*o), wire_lines(l)))
                .collect(),
        };
        let url = format!("http://{address}/internal/carts/handover");
        let response = peers
            .authorized(peers.client().post(&url))
            .json(&call)
            .send()
            .await
            .map_err(|e| format!("{address}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{address} answered {}", response.status()));
        }
        let owners: Vec<OwnerKey> = carts.iter().map(|(o, _)| *o).collect();
        local.forget(&owners).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Hands over, after each change of view, the carts this instance no longer owns; then tells
/// the members it is done. Runs while the carts live.
pub(crate) fn spawn(local: &Arc<LocalCarts>, peers: &Arc<Peers>) {
    let (local, peers) = (Arc::downgrade(local), Arc::downgrade(peers));
    tokio::spawn(async move {
        let Some(mut changes) = peers.upgrade().map(|p| p.changes()) else {
            return;
        };
        loop {
            let (Some(local), Some(peers)) = (local.upgrade(), peers.upgrade()) else {
                return;
            };
            let view = peers.view();
            if view.hash != 0 && peers.pushed_view() != view.hash {
                match hand_over(&peers, &local).await {
                    Ok(()) => {
                        peers.set_pushed_view(view.hash);
                        announce(&peers, view.hash).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cart hand-over failed; trying again");
                        drop((local, peers));
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    }
                }
            }
            drop((local, peers));
            if changes.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Sends every cart not owned here, batch by batch, until none is left in this view.
async fn hand_over(peers: &Peers, local: &LocalCarts) -> Result<(), String> {
    let view = peers.view().hash;
    let started = std::time::Instant::now();
    let mut sent = 0usize;
    loop {
        if peers.view().hash != view {
            return Err("the view changed during the hand-over".into());
        }
        let batch = local.not_owned(BATCH);
        if batch.is_empty() {
            break;
        }
        sent += batch.len();
        send(peers, local, batch).await?;
    }
    if sent > 0 {
        tracing::info!(
            carts = sent,
            ms = started.elapsed().as_millis() as u64,
            "carts handed over to their new owners"
        );
    }
    Ok(())
}

/// Tells every other member that this instance handed over everything in view `hash`.
async fn announce(peers: &Peers, hash: u64) {
    let view = peers.view();
    let call = PullCall {
        view: hash,
        owner: peers.me().to_owned(),
    };
    for address in view.others() {
        let url = format!("http://{address}/internal/carts/done");
        if let Err(e) = peers
            .authorized(peers.client().post(&url))
            .json(&call)
            .send()
            .await
        {
            tracing::debug!(error = %e, peer = address, "cannot tell a peer the hand-over is done");
        }
    }
}

/// Leaves the pool: drains this instance at the gateway and waits (at most `limit`) until
/// every cart it held was taken over.
pub(crate) async fn leave(local: &LocalCarts, peers: &Peers, limit: Duration) {
    if !peers.leave().await {
        // The whole deployment is stopping (`strata up` stops the gateway first): the carts
        // stay in this instance's log.
        tracing::info!("leaving without handing carts over: the gateway is gone");
        return;
    }
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let held = local.held();
        if held == 0 {
            tracing::info!("every cart handed over; leaving");
            return;
        }
        if peers.view().is_empty() {
            tracing::warn!(
                carts = held,
                "leaving without handing carts over: no other instance is serving"
            );
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::error!(
                carts = held,
                "leaving with carts not handed over (they stay in this instance's log)"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
