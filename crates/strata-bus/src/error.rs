//! The bus's error type: what went wrong, and whether trying again may help.

/// A boxed error from a backend client library, kept as the cause for logs.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a [`Bus`](crate::Bus) operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus URL is neither `memory` nor a `nats://` URL.
    #[error("unsupported bus URL `{0}`: expected `memory` or `nats://host:port`")]
    UnsupportedUrl(String),

    /// A subject or subject filter is malformed.
    #[error("invalid subject `{subject}`: {reason}")]
    InvalidSubject {
        /// The subject or filter as given.
        subject: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A namespace or durable name is malformed.
    #[error("invalid {what} `{value}`: {reason}")]
    InvalidName {
        /// `"namespace"` or `"durable name"`.
        what: &'static str,
        /// The name as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// [`SubscribeOptions`](crate::SubscribeOptions) holds a value the bus cannot honour.
    #[error("invalid subscribe options: {0}")]
    InvalidOptions(&'static str),

    /// The durable name already exists with another subject filter. A durable keeps its
    /// position in one filtered sequence, so it cannot silently switch to another one.
    #[error("durable `{durable}` already exists with filter `{existing}`, not `{requested}`")]
    DurableConflict {
        /// The durable name.
        durable: String,
        /// The filter the durable was created with.
        existing: String,
        /// The filter asked for now.
        requested: String,
    },

    /// The bus was closed with [`Bus::close`](crate::Bus::close).
    #[error("the bus is closed")]
    Closed,

    /// Connecting to the NATS server failed.
    #[error("cannot connect to NATS at {url}")]
    Connect {
        /// The server URL (as configured; it is the caller's to keep free of secrets in logs).
        url: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },

    /// The NATS server or client failed an operation.
    #[error("NATS {op} failed")]
    Nats {
        /// The operation: `publish`, `create stream`, `subscribe`, `receive`, `ack`, …
        op: &'static str,
        /// The client's error.
        #[source]
        source: BoxError,
    },
}

impl BusError {
    /// True when the same call may succeed later (the backend was unreachable or timed out);
    /// false when the call itself is wrong or the bus is closed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Nats { .. } | Self::Connect { .. })
    }

    pub(crate) fn nats(op: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Nats {
            op,
            source: source.into(),
        }
    }
}

/// The result of a bus operation.
pub type Result<T, E = BusError> = std::result::Result<T, E>;
