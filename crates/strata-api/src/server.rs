//! [`ApiServer`]: binds the listener, assembles the router (pages, catalog, ops endpoints, JSON
//! fallbacks, body limit, observation) and serves it until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::{Extension, Router};
use prometheus_client::registry::Registry;
use strata_cache::AnyCache;
use strata_core::Shutdown;
use strata_core::config::Secret;
#[cfg(doc)]
use strata_core::http::DEFAULT_REQUEST_TIMEOUT;
use strata_core::http::{RoleServer, ready_check, role_router, unready};
use strata_objects::AnyObjects;
use strata_store::Store;

use crate::auth::{LoginThrottle, PasswordParams, Passwords, ThrottleSettings, Tokens};
use crate::cache_aside::CacheAside;
use crate::carts::{CartSettings, Carts};
use crate::extract::BodyLimit;
use crate::state::{AppState, Shared};
use crate::web::currency::Currencies;
use crate::{
    ApiError, ROLE, cart, catalog, images, notifications, openapi, orders, quote, recommendations,
    users, web,
};

/// What one api instance needs besides its backends.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// The instance name (`api-1`), sent back in `X-Strata-Instance` and used in logs.
    pub instance: String,
    /// Where to listen; port 0 lets the OS choose (see [`ApiServer::local_addr`]).
    pub listen: SocketAddr,
    /// How long a cached read stays valid. Must be more than zero.
    pub cache_ttl: Duration,
    /// The largest request body accepted; larger ones get a JSON 413. Must be more than zero.
    pub max_body_bytes: usize,
    /// Time a request has to produce its response before it is given up with a JSON 504
    /// (`api.request_timeout_ms`; [`DEFAULT_REQUEST_TIMEOUT`]). Must be more than zero.
    pub request_timeout: Duration,
    /// Tokens, passwords, the log-in throttle and the first admin.
    pub auth: AuthSettings,
    /// How long the instance goes on serving, unready, once shutdown is asked for
    /// ([`RoleServer::drain_delay`]). Zero: stop accepting at once.
    pub drain_delay: Duration,
    /// The OpenAPI documents of endpoints other roles serve behind the same gateway (chat's),
    /// merged into the api's `/openapi.json` and `/docs`, so a client reads one description
    /// of the whole public interface. Empty: the api's endpoints only.
    pub documents: Vec<utoipa::openapi::OpenApi>,
    /// The currencies the storefront shows prices in (`web.currencies`), the base first:
    /// prices are cents of the base. Default [`DEFAULT_CURRENCIES`](crate::DEFAULT_CURRENCIES).
    pub currencies: Currencies,
    /// Where carts live (`[carts]`). Default: in the store (shared).
    pub carts: CartSettings,
}

/// How the api authenticates: every instance of a deployment must have the same
/// `jwt_secret` and `key_id`, so that any instance verifies the tokens of any other.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// The HS256 signing secret (`auth.jwt_secret`), at least 32 bytes.
    pub jwt_secret: Secret,
    /// Names the key in every token's `kid` header (`auth.key_id`). Default `k1`.
    pub key_id: String,
    /// How long a token lives (`auth.token_ttl_secs`). Default one hour: a stolen token is
    /// useful for an hour at most, and a granted role shows within the hour.
    pub token_ttl: Duration,
    /// argon2id costs. Default: OWASP's recommendation ([`PasswordParams::default`]).
    pub password: PasswordParams,
    /// Limits of the log-in throttle. Default: 5 failures per email, 50 per client IP, per
    /// 15 minutes.
    pub throttle: ThrottleSettings,
    /// The admin account to create (or promote) at start-up, if any.
    pub admin: Option<AdminBootstrap>,
}

impl AuthSettings {
    /// The defaults around a signing secret.
    pub fn new(jwt_secret: Secret) -> Self {
        Self {
            jwt_secret,
            key_id: "k1".to_owned(),
            token_ttl: Duration::from_secs(3600),
            password: PasswordParams::default(),
            throttle: ThrottleSettings::default(),
            admin: None,
        }
    }
}

/// The first admin (`admin.email`, `admin.password`): created when no account has the email,
/// promoted to admin (password untouched) when one does.
#[derive(Clone, Debug)]
pub struct AdminBootstrap {
    /// The admin's email.
    pub email: String,
    /// The admin's password for a new account, 8 to 128 characters.
    pub password: Secret,
}

/// One api instance: a bound listener and the router it will serve.
pub struct ApiServer {
    server: RoleServer,
    /// Local carts shared with peers start after the bind and leave before the shutdown.
    carts: Carts,
}

impl ApiServer {
    /// Binds the listener and builds the router. Nothing is served until [`ApiServer::run`].
    ///
    /// The store is expected to be migrated already (the binary does it once per process);
    /// `/readyz` reports not ready until it is, and while the store's read replica (if it has
    /// one) answers without every migration (an unreachable replica is no reason: catalog
    /// reads go to the primary meanwhile). When the settings name an admin, the account
    /// is created or promoted here (which needs the migrated store). In local cart mode the
    /// carts are loaded here, before the listener exists: an instance is never ready with
    /// half its carts.
    ///
    /// # Errors
    /// [`ApiError::Role`] for settings that make no sense (a zero TTL or body limit, a short
    /// JWT secret, bad argon2 parameters, an unacceptable admin email or password) and when the
    /// address cannot be bound; store errors from the admin bootstrap.
    pub async fn build(
        settings: ApiSettings,
        store: Store,
        cache: AnyCache,
        objects: AnyObjects,
    ) -> Result<ApiServer, ApiError> {
        if settings.cache_ttl.is_zero() {
            return Err(ApiError::settings("cache_ttl must be more than zero"));
        }
        if settings.max_body_bytes == 0 {
            return Err(ApiError::settings("max_body_bytes must be more than zero"));
        }
        if settings.request_timeout.is_zero() {
            return Err(ApiError::settings("request_timeout must be more than zero"));
        }
        let instance: Arc<str> = Arc::from(settings.instance.as_str());

        let auth = &settings.auth;
        let tokens = Tokens::new(
            auth.jwt_secret.expose().as_bytes(),
            &auth.key_id,
            auth.token_ttl,
        )?;
        let passwords = Passwords::new(auth.password)?;
        if let Some(admin) = &auth.admin {
            users::bootstrap_admin(&store, &passwords, admin).await?;
        }

        let mut registry = Registry::default();
        cache.register_metrics(ROLE, &mut registry);
        let cache_aside = CacheAside::new(cache.clone(), settings.cache_ttl, ROLE, &mut registry);
        let carts = Carts::open(
            &settings.carts,
            &settings.instance,
            store.clone(),
            cache_aside.clone(),
            &mut registry,
        )
        .await?;
        let state = AppState::new(Shared {
            store: store.clone(),
            cache: cache_aside,
            carts: carts.clone(),
            tokens,
            passwords,
            throttle: LoginThrottle::new(cache, auth.throttle),
            currencies: Arc::new(settings.currencies.clone()),
            objects,
        });
        // The cache is left out on purpose: reads fall back to the store when it is down, so
        // an unreachable cache must not take every api instance out of the gateway's pools.
        // A read replica is in only when it answers behind on migrations: an unreachable one
        // is no reason, catalog reads then go to the primary.
        let ready = ready_check(move || {
            let store = store.clone();
            async move {
                store.ready().await.map_err(|e| unready("store", e))?;
                store
                    .read_replica_ready()
                    .await
                    .map_err(|e| unready("store read replica", e))
            }
        });
        let routes = app_routes(state, &settings.documents)
            .layer(Extension(BodyLimit(settings.max_body_bytes)));
        let router = role_router(
            ROLE,
            instance.clone(),
            registry,
            routes,
            ready,
            settings.max_body_bytes,
            settings.request_timeout,
        );
        let server = RoleServer::bind(ROLE, instance, settings.listen, router)
            .await?
            .drain_delay(settings.drain_delay);
        carts.start(server.local_addr());
        Ok(Self { server, carts })
    }

    /// The address actually bound (the OS's choice when the port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The complete router, for driving the service in-process (`tower::ServiceExt::oneshot`).
    pub fn router(&self) -> Router {
        self.server.router()
    }

    /// Serves requests until `shutdown` is cancelled, then stops accepting, lets in-flight
    /// requests finish and returns.
    ///
    /// # Errors
    /// [`ApiError::Role`] when the listener fails.
    ///
    /// With local carts shared among instances, shutdown first drains this instance at the
    /// gateway and hands every cart it holds to its new owner (serving meanwhile, unready),
    /// at most [`LEAVE_LIMIT`]; the listener closes after that.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), ApiError> {
        let stop = Shutdown::new();
        let draining = self.server.draining();
        let carts = self.carts.clone();
        let leaving = {
            let stop = stop.clone();
            async move {
                shutdown.cancelled().await;
                draining.cancel();
                carts.leave(LEAVE_LIMIT).await;
                stop.cancel();
            }
        };
        let serving = self.server.run(stop.clone());
        tokio::pin!(serving);
        let served = tokio::select! {
            served = &mut serving => served,
            () = leaving => serving.await,
        };
        Ok(served?)
    }
}

/// Longest a shutting-down instance spends handing its local carts over.
pub const LEAVE_LIMIT: Duration = Duration::from_secs(30);

/// The api's own routes; [`role_router`] adds the ops endpoints, the fallbacks, the body limit
/// and the observing middleware around them.
fn app_routes(state: AppState, documents: &[utoipa::openapi::OpenApi]) -> Router {
    Router::new()
        .merge(web::routes(state.clone()))
        .merge(catalog::routes())
        .merge(recommendations::routes())
        .merge(images::routes())
        .merge(users::routes())
        .merge(quote::routes())
        .merge(cart::routes())
        .merge(orders::routes())
        .merge(notifications::routes())
        .merge(openapi::routes(documents))
        .merge(crate::carts::internal_routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cart::owner_cookie,
        ))
        .with_state(state)
}
