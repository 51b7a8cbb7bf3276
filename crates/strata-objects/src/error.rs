//! The crate's error type: what failed, and whether trying again may help.

/// A `Result` whose error is [`ObjectsError`].
pub type Result<T, E = ObjectsError> = std::result::Result<T, E>;

/// Why an object store operation or its construction failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectsError {
    /// A key breaks the rules of [`ObjectKey`](crate::ObjectKey) (shown cut to 64 characters).
    #[error(
        "invalid object key {0:?}: expected `/`-separated segments of A-Z a-z 0-9 . _ - not starting with `.`"
    )]
    InvalidKey(String),

    /// A content type that is empty, too long or not printable ASCII.
    #[error("invalid content type {0:?}")]
    InvalidContentType(String),

    /// The configuration names no backend this crate has, or is incomplete for it.
    #[error("object store: {0}")]
    Config(String),

    /// The local directory could not be read or written.
    #[error("object store directory: {0}")]
    Io(#[from] std::io::Error),

    /// The S3 server could not be reached or its answer not read.
    #[error("object store S3 request: {0}")]
    Http(#[from] reqwest::Error),

    /// The S3 server answered with an error status.
    #[error("object store S3 server answered {status}: {message}")]
    S3 {
        /// The HTTP status.
        status: u16,
        /// The start of its error body (at most 200 characters).
        message: String,
    },

    /// What the backend holds under a key is not an object this crate wrote.
    #[error("object {key} is corrupt: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        reason: &'static str,
    },
}

impl ObjectsError {
    /// True when the failure is about reaching the backend (I/O on the network, a timeout, a
    /// server error), so the same call may succeed later; false for bad input or bad data.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Http(e) => e.is_connect() || e.is_timeout() || e.is_request() || e.is_body(),
            Self::S3 { status, .. } => *status >= 500 || *status == 429,
            Self::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut
            ),
            Self::InvalidKey(_)
            | Self::InvalidContentType(_)
            | Self::Config(_)
            | Self::Corrupt { .. } => false,
        }
    }
}
