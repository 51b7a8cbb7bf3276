//! The crate's error type: what failed, and whether trying again may help.

use std::time::Duration;

/// A `Result` whose error is [`CacheError`].
pub type Result<T, E = CacheError> = std::result::Result<T, E>;

/// Why a cache operation or a cache construction failed.
///
/// Callers of a cache-aside read usually log the error and fall back to the store;
/// [`CacheError::is_transient`] tells whether a retry could succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// `set` was given a zero TTL; every entry must expire.
    #[error("invalid cache TTL {0:?}: it must be greater than zero")]
    InvalidTtl(Duration),

    /// The cache URL names no known backend. The URL is shown with any password redacted.
    #[error(
        "unsupported cache URL {url:?}: expected \"memory\", \"memory://\", \"redis://…\" or \"rediss://…\""
    )]
    UnsupportedUrl {
        /// The URL as given, with its user information replaced by `***`.
        url: String,
    },

    /// Redis refused the URL, could not be reached, or answered with an error.
    #[error("redis cache: {0}")]
    Redis(#[from] ::redis::RedisError),

    /// Redis did not answer within the cache's operation timeout (`cache.timeout_ms`).
    #[error("redis cache: no answer within {0:?}")]
    Timeout(Duration),

    /// The circuit breaker is open after repeated failures: the call was not made (see
    /// `RedisOptions`).
    #[error("redis cache: circuit open after repeated failures, not calling")]
    CircuitOpen,

    /// A value could not be encoded to or decoded from JSON (`get_json` / `set_json`).
    #[error("cache value is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl CacheError {
    /// True when the failure is about reaching the backend (I/O, timeout, dropped or refused
    /// connection), so the same call may succeed later; false for bad input or bad data.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
            }
            Self::Timeout(_) | Self::CircuitOpen => true,
            Self::InvalidTtl(_) | Self::UnsupportedUrl { .. } | Self::Json(_) => false,
        }
    }
}

/// Replaces the user information of `scheme://user:password@host…` by `***`, so a URL can be
/// logged or shown in an error without leaking a password.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("redis://user:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact_url("rediss://:secret@host"), "rediss://***@host");
        assert_eq!(
            redact_url("redis://host:6379/0?a=@"),
            "redis://host:6379/0?a=@"
        );
        assert_eq!(redact_url("memcached"), "memcached");
    }

    #[test]
    fn only_connection_failures_are_transient() {
        assert!(!CacheError::InvalidTtl(Duration::ZERO).is_transient());
        let refused =
            ::redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(CacheError::from(refused).is_transient());
        assert!(CacheError::Timeout(Duration::from_millis(1)).is_transient());
        assert!(CacheError::CircuitOpen.is_transient());
    }
}
