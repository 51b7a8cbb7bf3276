//! Coupon rules: the `coupons` table that price quotes and checkout read. The demo coupons are
//! inserted by migration 0003 (`WELCOME10`, `SAVE5`, `BIG20` and the expired `SUMMER15`).

use time::OffsetDateTime;

use crate::StoreError;
use crate::store::{Store, dispatch};

/// The longest coupon code accepted; longer input cannot name a coupon.
pub const MAX_COUPON_CODE_LEN: usize = 32;

/// What a coupon takes off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CouponKind {
    /// A share of the subtotal in basis points (1 000 = 10 %), `1..=10_000`.
    Percent {
        /// The share, in basis points.
        basis_points: i64,
    },
    /// A fixed amount in cents, more than zero.
    Fixed {
        /// The amount, in cents.
        cents: i64,
    },
}

/// A coupon as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coupon {
    /// The code customers type, upper case.
    pub code: String,
    /// What it takes off.
    pub kind: CouponKind,
    /// The subtotal it needs, in cents.
    pub min_subtotal_cents: i64,
    /// The first instant it is no longer valid; `None`: never expires.
    pub expires_at: Option<OffsetDateTime>,
}

/// A `coupons` row before its `kind` and `amount` are combined.
#[derive(sqlx::FromRow)]
pub(crate) struct CouponRow {
    code: String,
    kind: String,
    amount: i64,
    min_subtotal_cents: i64,
    expires_at: Option<OffsetDateTime>,
}

/// The columns of [`CouponRow`].
macro_rules! coupon_columns {
    () => {
        "code, kind, amount, min_subtotal_cents, expires_at"
    };
}
pub(crate) use coupon_columns;

impl TryFrom<CouponRow> for Coupon {
    type Error = StoreError;

    fn try_from(row: CouponRow) -> Result<Self, StoreError> {
        let kind = match row.kind.as_str() {
            "percent" => CouponKind::Percent {
                basis_points: row.amount,
            },
            "fixed" => CouponKind::Fixed { cents: row.amount },
            // The CHECK constraint makes this unreachable short of a hand-edited database.
            other => {
                return Err(StoreError::Database(sqlx::Error::Decode(
                    format!("coupon {:?} has unknown kind {other:?}", row.code).into(),
                )));
            }
        };
        Ok(Coupon {
            code: row.code,
            kind,
            min_subtotal_cents: row.min_subtotal_cents,
            expires_at: row.expires_at,
        })
    }
}

/// Normalizes a code as customers type it: surrounding spaces dropped, upper case. `None` when
/// the result cannot be a code (empty, longer than [`MAX_COUPON_CODE_LEN`], or characters other
/// than ASCII letters, digits, `-` and `_`).
pub fn normalize_coupon_code(code: &str) -> Option<String> {
    let code = code.trim();
    let valid = !code.is_empty()
        && code.len() <= MAX_COUPON_CODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then(|| code.to_ascii_uppercase())
}

/// Reads the `coupons` table. Obtained from [`Store::coupons`].
#[derive(Clone, Copy, Debug)]
pub struct CouponRepo<'a> {
    store: &'a Store,
}

impl<'a> CouponRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// The coupon with this code (matched exactly: normalize it first with
    /// [`normalize_coupon_code`]), or `None`.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn get(&self, code: &str) -> Result<Option<Coupon>, StoreError> {
        let row: Option<CouponRow> = dispatch!(self.store, pool => {
            sqlx::query_as(concat!("SELECT ", coupon_columns!(), " FROM coupons WHERE code = $1"))
                .bind(code)
                .fetch_optional(pool)
                .await?
        });
        row.map(Coupon::try_from).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_normalized() {
        assert_eq!(
            normalize_coupon_code(" welcome10 ").as_deref(),
            Some("WELCOME10")
        );
        assert_eq!(normalize_coupon_code("a-b_c").as_deref(), Some("A-B_C"));
        for bad in ["", "   ", "a b", "é", "x;drop", &"A".repeat(33)] {
            assert_eq!(normalize_coupon_code(bad), None, "{bad:?}");
        }
        assert!(normalize_coupon_code(&"A".repeat(32)).is_some());
    }
}
