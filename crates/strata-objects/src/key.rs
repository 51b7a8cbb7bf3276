//! [`ObjectKey`]: the name of an object, checked once so no backend sees a key that could
//! leave its directory or need escaping in a URL.

use std::fmt;

use crate::{ObjectsError, Result};

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;

/// A valid object key: segments separated by `/`, each 1 to 128 of `A-Z a-z 0-9 . _ -`, not
/// starting with `.` (so no `.` or `..`, and no clash with the local backend's temporary
/// files), at most [`MAX_KEY_BYTES`] in all. The same key is a relative path on disk and an
/// S3 key that needs no percent-encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Parses a key.
    ///
    /// # Errors
    /// [`ObjectsError::InvalidKey`] naming the key (cut to 64 characters) when it breaks a
    /// rule above.
    pub fn new(key: impl Into<String>) -> Result<Self> {
        let key = key.into();
        let valid = !key.is_empty()
            && key.len() <= MAX_KEY_BYTES
            && key.split('/').all(|segment| {
                !segment.is_empty()
                    && segment.len() <= 128
                    && !segment.starts_with('.')
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            });
        if valid {
            Ok(Self(key))
        } else {
            Err(ObjectsError::InvalidKey(key.chars().take(64).collect()))
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_inside_and_need_no_escaping() {
        for good in ["a", "products/42", "products/42/image.v2", "A_b-c.d/e"] {
            assert_eq!(ObjectKey::new(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/",
            "..",
            "a/../b",
            ".hidden",
            "a/.tmp-x",
            "sp ace",
            "percent%2F",
            "back\\slash",
            "naïve",
            "nul\0",
        ] {
            assert!(
                matches!(ObjectKey::new(bad), Err(ObjectsError::InvalidKey(_))),
                "{bad:?}"
            );
        }
        assert!(ObjectKey::new("a".repeat(MAX_KEY_BYTES + 1)).is_err());
        assert!(ObjectKey::new("a".repeat(129)).is_err());
    }
}
