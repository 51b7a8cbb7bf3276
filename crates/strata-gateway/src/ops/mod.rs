//! The operations view, served by the admin listener: the page (`GET /ops`, from `web/ops/`,
//! [`page`]), its live feed of every pool and instance (`GET /admin/stream`, Server-Sent
//! Events, [`stream`]), the event-pipeline figures it reads from other processes
//! ([`sources`]), and the hook through which it stops and starts instances ([`control`]).

pub mod control;
pub mod page;
pub mod sources;
pub mod stream;

pub use control::{ControlError, ControlFuture, InstanceControl};
pub use stream::{EventStream, Stream};
