//! strata-objects: the object store, where files live (product images): a local directory
//! (the default, one per instance) or an S3-compatible server (shared by every instance).
//!
//! An object is bytes with a content type, under an [`ObjectKey`]; its [`ObjectMeta::etag`]
//! is computed from the bytes when it is written and kept with it, so every backend gives the
//! same strong validator for the same bytes. Roles hold an [`AnyObjects`], chosen at start-up
//! from the configuration by [`AnyObjects::open`], so handlers never branch on the backend.
//!
//! Every backend runs the same contract test suite (`contract`, built with the `testing`
//! feature).

#![forbid(unsafe_code)]

mod any;

#[cfg(any(test, feature = "testing"))]
pub mod contract;
mod error;
mod key;
mod local;
mod s3;
mod sigv4;

use std::future::Future;

pub use bytes::Bytes;
use sha2::{Digest, Sha256};

pub use crate::any::{AnyObjects, default_dir, local_dir};
pub use crate::error::{ObjectsError, Result};
pub use crate::key::ObjectKey;
pub use crate::local::LocalObjects;
pub use crate::s3::{S3Objects, S3Settings};

/// The longest content type stored with an object, in bytes.
pub const MAX_CONTENT_TYPE_BYTES: usize = 255;

/// What is known of a stored object without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The content type given when it was written (`image/png`).
    pub content_type: String,
    /// A strong validator of the bytes: 32 lowercase hex digits, the first 128 bits of their
    /// SHA-256, without quotes. Equal bytes have equal tags on every backend.
    pub etag: String,
    /// The length of the bytes.
    pub size: u64,
}

/// A stored object: its metadata and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Content type, tag and size.
    pub meta: ObjectMeta,
    /// The bytes as written.
    pub bytes: Bytes,
}

/// A store of objects by key.
///
/// Methods return `impl Future + Send` (rather than using `async_trait`), as `strata-cache`'s
/// `Cache` does. Objects are read and written whole: they are small (images of at most a few
/// MiB), and a whole write is what makes replacing one atomic on every backend.
pub trait ObjectStore: Send + Sync {
    /// Stores `bytes` under `key` with `content_type`, replacing any object there. A reader
    /// sees the old object or the new one, never a mix.
    ///
    /// # Errors
    /// [`ObjectsError::InvalidContentType`] for an empty, overlong or non-printable content
    /// type; [`ObjectsError::Io`] or [`ObjectsError::Http`]/[`ObjectsError::S3`] when the
    /// backend fails.
    fn put(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        content_type: &str,
    ) -> impl Future<Output = Result<ObjectMeta>> + Send;

    /// The object under `key`, or `None` when there is none.
    ///
    /// # Errors
    /// When the backend fails, or [`ObjectsError::Corrupt`] when what it holds is not an
    /// object this crate wrote.
    fn get(&self, key: &ObjectKey) -> impl Future<Output = Result<Option<Object>>> + Send;

    /// The metadata of the object under `key`, without its bytes; `None` when there is none.
    ///
    /// # Errors
    /// As [`ObjectStore::get`].
    fn head(&self, key: &ObjectKey) -> impl Future<Output = Result<Option<ObjectMeta>>> + Send;

    /// Removes the object under `key`; removing an absent object is not an error.
    ///
    /// # Errors
    /// When the backend fails.
    fn delete(&self, key: &ObjectKey) -> impl Future<Output = Result<()>> + Send;
}

/// The tag [`ObjectMeta::etag`] gives `bytes`.
pub fn etag_of(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes)[..16])
}

/// Lowercase hex digits of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Checks a content type before it is stored: 1 to [`MAX_CONTENT_TYPE_BYTES`] bytes of
/// printable ASCII (it travels as an HTTP header and a line of the local format).
fn checked_content_type(content_type: &str) -> Result<&str> {
    let ok = !content_type.is_empty()
        && content_type.len() <= MAX_CONTENT_TYPE_BYTES
        && content_type.bytes().all(|b| (0x20..0x7f).contains(&b));
    if ok {
        Ok(content_type)
    } else {
        Err(ObjectsError::InvalidContentType(
            content_type.chars().take(64).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_128_bits_of_sha256_in_hex() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(etag_of(b"abc"), "ba7816bf8f01cfea414140de5dae2223");
        assert_ne!(etag_of(b"abc"), etag_of(b"abd"));
    }

    #[test]
    fn content_types_are_printable_ascii() {
        assert!(checked_content_type("image/png").is_ok());
        assert!(checked_content_type("image/svg+xml; charset=utf-8").is_ok());
        for bad in ["", "image/png\r\nx: y", "imagé/png"] {
            assert!(checked_content_type(bad).is_err(), "{bad:?}");
        }
        assert!(checked_content_type(&"a".repeat(256)).is_err());
    }
}
