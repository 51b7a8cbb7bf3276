//! Domain types shared by roles, parsed at the boundary so handlers only see valid values.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Defines an id type: a positive integer, parsed strictly from text (digits only: no sign, no
/// spaces, no leading `+`, at most what fits an `i64`), serialized as the bare number.
macro_rules! positive_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The id as stored.
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                parse_positive(s).map(Self)
            }
        }

        impl TryFrom<i64> for $name {
            type Error = InvalidId;
            fn try_from(n: i64) -> Result<Self, InvalidId> {
                if n > 0 { Ok(Self(n)) } else { Err(InvalidId) }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

positive_id!(
    /// A product id: a positive integer.
    ProductId
);
positive_id!(
    /// An order id: a positive integer.
    OrderId
);
positive_id!(
    /// An account id: a positive integer.
    UserId
);

/// A positive integer written as digits only, up to `i64::MAX` (the `int64` that the API's
/// documents promise; a larger one is refused as invalid, not cut).
fn parse_positive(s: &str) -> Result<i64, InvalidId> {
    // `61.0` is an integer too, as JSON Schema counts them (and the bodies' ids are read).
    let s = match s.split_once('.') {
        Some((whole, zeros)) if !zeros.is_empty() && zeros.bytes().all(|b| b == b'0') => whole,
        _ => s,
    };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidId);
    }
    match s.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(InvalidId),
    }
}

/// An id that is not a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("id must be a positive integer")]
pub struct InvalidId;

/// The name of one role instance (`api-1`, `chat-2`), unique within a deployment.
pub fn instance_name(role: &str, index: usize) -> String {
    format!("{role}-{}", index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_ids_parse_strictly() {
        assert_eq!("42".parse::<ProductId>().map(ProductId::get), Ok(42));
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "1.5",
            "abc",
            " 1",
            "99999999999999999999",
            "9223372036854775808",
            "1e3",
            "1.",
            ".0",
            "0.0",
            "1.01",
            "1.0.0",
            "1.0e0",
        ] {
            assert!(bad.parse::<ProductId>().is_err(), "{bad:?} accepted");
            assert!(bad.parse::<OrderId>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            "999999999999999999".parse::<UserId>().map(UserId::get),
            Ok(999_999_999_999_999_999)
        );
        assert_eq!(
            "9223372036854775807"
                .parse::<ProductId>()
                .map(ProductId::get),
            Ok(i64::MAX),
            "every positive int64 is an id"
        );
        for whole in ["61.0", "61.000"] {
            assert_eq!(
                whole.parse::<ProductId>().map(ProductId::get),
                Ok(61),
                "{whole}"
            );
        }
        assert_eq!(OrderId::try_from(0), Err(InvalidId));
        assert_eq!(
            OrderId::try_from(7).map(|id| id.to_string()).as_deref(),
            Ok("7")
        );
    }
}
