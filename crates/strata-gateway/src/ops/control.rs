//! Stopping and starting the processes behind instances, for the operations view's buttons.
//!
//! The gateway only balances addresses; what runs behind them is the embedding program's. A
//! program that owns its instances (`strata up`, which runs every instance in its own
//! process) hands the gateway an [`InstanceControl`] ([`crate::Gateway::with_control`]), and
//! `POST /admin/pools/{pool}/instances/{id}/stop|start` calls it. Without one (`strata serve`,
//! Kubernetes: instances are other processes or pods) those endpoints answer 400
//! `not_supported` and the page hides the buttons. The gateway learns of a stop the way it
//! would of a crash: health checks fail and requests fail over.

use std::future::Future;
use std::pin::Pin;

/// Why a stop or start did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing under control runs (or ran) at that address for that pool.
    #[error("no instance {address} of pool `{pool}` is run by this process")]
    Unknown {
        /// The pool named.
        pool: String,
        /// The instance's `host:port`.
        address: String,
    },
    /// The instance is in that state already (stopped, or running).
    #[error("{0}")]
    Already(String),
    /// It could not be done: the address is taken, the instance failed to build.
    #[error("{0}")]
    Failed(String),
}

/// What [`InstanceControl`]'s methods return.
pub type ControlFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ControlError>> + Send + 'a>>;

/// Stops and starts the instance of `pool` at `address` (`host:port`, as the admin API lists
/// it). A stop closes the instance's listener and ends its connections, as a crash would; a
/// start serves again on the same address. Each resolves when done.
pub trait InstanceControl: Send + Sync + std::fmt::Debug {
    /// Stops the instance.
    fn stop<'a>(&'a self, pool: &'a str, address: &'a str) -> ControlFuture<'a>;

    /// Starts the instance again.
    fn start<'a>(&'a self, pool: &'a str, address: &'a str) -> ControlFuture<'a>;
}
