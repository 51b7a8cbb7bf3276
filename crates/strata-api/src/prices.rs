//! Pricing: one pure function, [`quote`], that turns priced lines, the rules, an optional coupon,
//! a region and the current time into a [`Quote`]. `POST /api/v1/prices/quote` (in `quote.rs`),
//! the cart and checkout all call it, so a customer is charged exactly what they were shown.
//! Nothing here reads the store or knows HTTP beyond the status of a [`PriceError`].
//!
//! # The rules, in the order they apply
//! 1. **Line**: `gross = unit_price × quantity`.
//! 2. **Quantity tier** (per line): the largest tier whose `min_quantity` the line reaches takes
//!    its percentage off the line ([`QUANTITY_TIERS`]: 5 % from 5 units, 10 % from 10 units).
//!    `line_total = gross − tier_discount`; `subtotal = Σ line_total`.
//! 3. **Coupon** (at most one per order, on the subtotal): a percentage or a fixed amount,
//!    valid when not expired (`now < expires_at`) and when the subtotal reaches the coupon's
//!    minimum. A fixed coupon never takes more than the subtotal. A coupon that does not apply
//!    is reported with its reason and discounts nothing.
//! 4. **Tax** (once, on `subtotal − discount`) at the region's rate ([`TAX_RATES`], default
//!    region [`DEFAULT_REGION`]); prices are net of tax.
//! 5. `total = subtotal − discount + tax`, never negative.
//!
//! # The rounding rule
//! Every percentage is held in basis points (1 bp = 0.01 %) and every result is rounded to a
//! whole cent **half to even** (banker's rounding: 0.5 ¢ goes to the even neighbour, so
//! 2.5 → 2 and 3.5 → 4), which does not drift upwards over many lines. It is applied per line
//! for tier discounts, once for a percentage coupon and once for the tax; nothing else divides.
//!
//! # Limits
//! At most [`MAX_LINES`] lines, each product once, quantities in `1..=`[`MAX_QUANTITY`]; all
//! arithmetic is checked, so an absurd price is an error, never a wrapped total.

use axum::http::StatusCode;
use serde::Serialize;
use time::OffsetDateTime;

/// Most units of one product on one line: the cart's limit (and the schema's CHECK).
pub const MAX_QUANTITY: u32 = strata_store::MAX_LINE_QUANTITY;
/// Most distinct products in one quote: the cart's limit.
pub const MAX_LINES: usize = strata_store::MAX_CART_LINES;
/// Basis points in 100 %.
const FULL_BPS: u32 = 10_000;

/// A quantity discount: lines of at least `min_quantity` units get `discount_bps` off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tier {
    /// Units from which the tier applies.
    pub min_quantity: u32,
    /// Discount in basis points (500 = 5 %), at most 10 000.
    pub discount_bps: u32,
}

/// The shop's quantity tiers: 5 % off a line of 5 to 9 units, 10 % off 10 units or more.
pub const QUANTITY_TIERS: &[Tier] = &[
    Tier {
        min_quantity: 5,
        discount_bps: 500,
    },
    Tier {
        min_quantity: 10,
        discount_bps: 1_000,
    },
];

/// A region's tax rate in basis points (1 900 = 19 %).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaxRate {
    /// Region code as clients send it, upper case (`EU-DE`).
    pub region: &'static str,
    /// Rate in basis points, at most 10 000.
    pub rate_bps: u32,
}

/// Standard VAT or sales-tax rates of the regions the shop ships to (a demo table, not tax
/// advice).
pub const TAX_RATES: &[TaxRate] = &[
    TaxRate {
        region: "EU-DE",
        rate_bps: 1_900,
    },
    TaxRate {
        region: "EU-FR",
        rate_bps: 2_000,
    },
    TaxRate {
        region: "EU-NL",
        rate_bps: 2_100,
    },
    TaxRate {
        region: "EU-IE",
        rate_bps: 2_300,
    },
    TaxRate {
        region: "UK",
        rate_bps: 2_000,
    },
    TaxRate {
        region: "US-CA",
        rate_bps: 725,
    },
    TaxRate {
        region: "US-NY",
        rate_bps: 400,
    },
    TaxRate {
        region: "US-OR",
        rate_bps: 0,
    },
];

/// The region taxed when a request names none: the shop's home market.
pub const DEFAULT_REGION: &str = "EU-DE";

/// Everything [`quote`] needs besides the order itself. [`PriceRules::standard`] is what the
/// shop uses; tests build others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceRules {
    /// Quantity tiers, in any order.
    pub tiers: Vec<Tier>,
    /// Tax rates by region.
    pub tax_rates: Vec<TaxRate>,
    /// The region used when none is given; must be in `tax_rates`.
    pub default_region: &'static str,
}

impl PriceRules {
    /// The documented rules: [`QUANTITY_TIERS`], [`TAX_RATES`] and [`DEFAULT_REGION`].
    pub fn standard() -> Self {
        Self {
            tiers: QUANTITY_TIERS.to_vec(),
            tax_rates: TAX_RATES.to_vec(),
            default_region: DEFAULT_REGION,
        }
    }

    /// The tier discount of a line of `quantity` units, in basis points (0 when none applies).
    fn tier_bps(&self, quantity: u32) -> u32 {
        self.tiers
            .iter()
            .filter(|t| quantity >= t.min_quantity)
            .map(|t| t.discount_bps.min(FULL_BPS))
            .max()
            .unwrap_or(0)
    }

    /// The tax rate of `region` (the default region for `None`).
    fn tax(&self, region: Option<&str>) -> Result<TaxRate, PriceError> {
        let wanted = region.unwrap_or(self.default_region);
        self.tax_rates
            .iter()
            .find(|t| t.region == wanted)
            .copied()
            .ok_or_else(|| PriceError::UnknownRegion(wanted.to_owned()))
    }
}

/// One line to price: a product, its current unit price and how many units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineInput {
    /// The product.
    pub product_id: i64,
    /// Its unit price in cents, as stored (never negative).
    pub unit_price_cents: i64,
    /// Units, `1..=MAX_QUANTITY`.
    pub quantity: u32,
}

/// How a coupon takes money off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CouponKind {
    /// A percentage of the subtotal, in basis points (1 000 = 10 %), at most 10 000.
    Percent { bps: u32 },
    /// A fixed amount in cents, capped at the subtotal.
    Fixed { cents: i64 },
}

/// The terms of one coupon, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CouponRule {
    /// The code customers type, upper case.
    pub code: String,
    /// What it takes off.
    pub kind: CouponKind,
    /// The subtotal (after tier discounts) it needs, in cents.
    pub min_subtotal_cents: i64,
    /// The first instant it is no longer valid; `None`: never expires.
    pub expires_at: Option<OffsetDateTime>,
}

impl From<strata_store::Coupon> for CouponRule {
    fn from(c: strata_store::Coupon) -> Self {
        let kind = match c.kind {
            strata_store::CouponKind::Percent { basis_points } => CouponKind::Percent {
                bps: u32::try_from(basis_points).unwrap_or(0).min(FULL_BPS),
            },
            strata_store::CouponKind::Fixed { cents } => CouponKind::Fixed {
                cents: cents.max(0),
            },
        };
        Self {
            code: c.code,
            kind,
            min_subtotal_cents: c.min_subtotal_cents,
            expires_at: c.expires_at,
        }
    }
}

/// The coupon a customer asked for, after looking its code up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CouponInput<'a> {
    /// No coupon asked for.
    None,
    /// A code that names no coupon.
    Unknown(&'a str),
    /// A stored coupon.
    Known(&'a CouponRule),
}

/// Why a coupon discounted nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CouponRejection {
    /// No coupon has this code.
    Unknown,
    /// The coupon's expiry has passed.
    Expired,
    /// The subtotal is below the coupon's minimum.
    BelowMinimum,
}

impl CouponRejection {
    /// A sentence for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unknown => "no coupon has this code",
            Self::Expired => "the coupon has expired",
            Self::BelowMinimum => "the subtotal is below the coupon's minimum",
        }
    }
}

/// What became of the coupon of a quote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CouponOutcome {
    /// The code as asked for.
    pub code: String,
    /// True when it discounted the order.
    pub applied: bool,
    /// Why it did not apply (absent when applied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection: Option<CouponRejection>,
    /// What it took off, in cents (0 when rejected).
    pub discount_cents: i64,
}

/// One priced line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QuoteLine {
    /// The product.
    pub product_id: i64,
    /// Unit price in cents.
    pub unit_price_cents: i64,
    /// Units.
    pub quantity: u32,
    /// `unit_price_cents × quantity`.
    pub gross_cents: i64,
    /// The quantity tier's rate in basis points (0 when none applies).
    pub tier_discount_bps: u32,
    /// The tier discount in cents, rounded half to even.
    pub tier_discount_cents: i64,
    /// `gross_cents − tier_discount_cents`.
    pub total_cents: i64,
}

/// A complete price quote. Invariants (checked by property tests): every amount is ≥ 0,
/// `subtotal = Σ lines.total`, `discount ≤ subtotal`,
/// `total = subtotal − discount + tax`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Quote {
    /// The lines, in the order given.
    pub lines: Vec<QuoteLine>,
    /// Sum of the line totals, in cents.
    pub subtotal_cents: i64,
    /// The coupon asked for and what became of it; absent when none was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon: Option<CouponOutcome>,
    /// The coupon discount in cents (0 without an applied coupon).
    pub discount_cents: i64,
    /// The region taxed.
    pub region: String,
    /// Its tax rate in basis points.
    pub tax_rate_bps: u32,
    /// Tax on `subtotal − discount`, rounded half to even.
    pub tax_cents: i64,
    /// `subtotal − discount + tax`.
    pub total_cents: i64,
}

impl Quote {
    /// The coupon's rejection, when one was asked for and did not apply.
    pub fn coupon_rejection(&self) -> Option<(&str, CouponRejection)> {
        let coupon = self.coupon.as_ref()?;
        coupon.rejection.map(|r| (coupon.code.as_str(), r))
    }
}

/// Why a quote could not be computed: always the input's fault (422 at the HTTP boundary).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    /// More than [`MAX_LINES`] lines.
    #[error("at most {MAX_LINES} lines per order, got {0}")]
    TooManyLines(usize),
    /// A quantity outside `1..=MAX_QUANTITY`.
    #[error(
        "quantity of product {product_id} must be between 1 and {MAX_QUANTITY}, got {quantity}"
    )]
    QuantityOutOfRange {
        /// The line's product.
        product_id: i64,
        /// The quantity asked for.
        quantity: i64,
    },
    /// The same product on two lines.
    #[error("product {0} appears on more than one line")]
    DuplicateProduct(i64),
    /// A negative unit price (the store forbids them; a bug if seen).
    #[error("product {0} has a negative price")]
    NegativePrice(i64),
    /// No tax rate for this region.
    #[error("unknown region `{}`", crate::error::echo(.0))]
    UnknownRegion(String),
    /// An amount does not fit in 64 bits.
    #[error("the amounts are too large to price")]
    Overflow,
}

impl PriceError {
    /// The HTTP status of this error: 422, except a negative stored price (a broken invariant,
    /// 500).
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::NegativePrice(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// The machine-readable code of this error.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::TooManyLines(_) => "too_many_lines",
            Self::QuantityOutOfRange { .. } => "invalid_quantity",
            Self::DuplicateProduct(_) => "duplicate_product",
            Self::NegativePrice(_) => "internal",
            Self::UnknownRegion(_) => "unknown_region",
            Self::Overflow => "price_overflow",
        }
    }
}

/// Prices `lines` under `rules` with an optional coupon, in `region` (the default region for
/// `None`), at time `now` (for coupon expiry). Pure: same input, same output.
///
/// # Errors
/// [`PriceError`] for invalid lines (count, quantity, duplicates, negative prices), an unknown
/// region, or amounts that overflow. A coupon that does not apply is not an error: the quote
/// reports it in [`Quote::coupon`].
pub fn quote(
    lines: &[LineInput],
    rules: &PriceRules,
    coupon: CouponInput<'_>,
    region: Option<&str>,
    now: OffsetDateTime,
) -> Result<Quote, PriceError> {
    if lines.len() > MAX_LINES {
        return Err(PriceError::TooManyLines(lines.len()));
    }
    let tax = rules.tax(region)?;
    let mut seen = std::collections::HashSet::with_capacity(lines.len());
    let mut priced = Vec::with_capacity(lines.len());
    let mut subtotal: i64 = 0;
    for line in lines {
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            return Err(PriceError::QuantityOutOfRange {
                product_id: line.product_id,
                quantity: i64::from(line.quantity),
            });
        }
        if !seen.insert(line.product_id) {
            return Err(PriceError::DuplicateProduct(line.product_id));
        }
        if line.unit_price_cents < 0 {
            return Err(PriceError::NegativePrice(line.product_id));
        }
        let gross = line
            .unit_price_cents
            .checked_mul(i64::from(line.quantity))
            .ok_or(PriceError::Overflow)?;
        let tier_bps = rules.tier_bps(line.quantity);
        let tier_discount = share(gross, tier_bps)?;
        let total = gross - tier_discount;
        subtotal = subtotal.checked_add(total).ok_or(PriceError::Overflow)?;
        priced.push(QuoteLine {
            product_id: line.product_id,
            unit_price_cents: line.unit_price_cents,
            quantity: line.quantity,
            gross_cents: gross,
            tier_discount_bps: tier_bps,
            tier_discount_cents: tier_discount,
            total_cents: total,
        });
    }

    let coupon = apply_coupon(coupon, subtotal, now)?;
    let discount = coupon.as_ref().map_or(0, |c| c.discount_cents);
    let taxable = subtotal - discount;
    let tax_cents = share(taxable, tax.rate_bps)?;
    let total = taxable.checked_add(tax_cents).ok_or(PriceError::Overflow)?;
    Ok(Quote {
        lines: priced,
        subtotal_cents: subtotal,
        coupon,
        discount_cents: discount,
        region: tax.region.to_owned(),
        tax_rate_bps: tax.rate_bps,
        tax_cents,
        total_cents: total,
    })
}

/// What the coupon takes off `subtotal` (≥ 0): never more than the subtotal.
fn apply_coupon(
    coupon: CouponInput<'_>,
    subtotal: i64,
    now: OffsetDateTime,
) -> Result<Option<CouponOutcome>, PriceError> {
    let rejected = |code: &str, reason| CouponOutcome {
        code: code.to_owned(),
        applied: false,
        rejection: Some(reason),
        discount_cents: 0,
    };
    let rule = match coupon {
        CouponInput::None => return Ok(None),
        CouponInput::Unknown(code) => {
            return Ok(Some(rejected(code, CouponRejection::Unknown)));
        }
        CouponInput::Known(rule) => rule,
    };
    if rule.expires_at.is_some_and(|at| now >= at) {
        return Ok(Some(rejected(&rule.code, CouponRejection::Expired)));
    }
    if subtotal < rule.min_subtotal_cents {
        return Ok(Some(rejected(&rule.code, CouponRejection::BelowMinimum)));
    }
    let discount = match rule.kind {
        CouponKind::Percent { bps } => share(subtotal, bps.min(FULL_BPS))?,
        CouponKind::Fixed { cents } => cents.clamp(0, subtotal),
    };
    Ok(Some(CouponOutcome {
        code: rule.code.clone(),
        applied: true,
        rejection: None,
        discount_cents: discount,
    }))
}

/// `amount × bps / 10 000`, rounded half to even, for `amount ≥ 0`. With `bps ≤ 10 000` the
/// result is at most `amount`; the product is formed in 128 bits, so it cannot overflow.
fn share(amount: i64, bps: u32) -> Result<i64, PriceError> {
    debug_assert!(amount >= 0);
    let exact = i128::from(amount) * i128::from(bps);
    let divisor = i128::from(FULL_BPS);
    let (quotient, remainder) = (exact / divisor, exact % divisor);
    let rounded = match (2 * remainder).cmp(&divisor) {
        std::cmp::Ordering::Less => quotient,
        std::cmp::Ordering::Greater => quotient + 1,
        std::cmp::Ordering::Equal => quotient + (quotient % 2),
    };
    i64::try_from(rounded).map_err(|_| PriceError::Overflow)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::Duration;

    use super::*;

    fn now() -> OffsetDateTime {
        // 2026-11-22T10:00:00Z.
        OffsetDateTime::from_unix_timestamp(1_795_341_600).unwrap()
    }

    fn line(product_id: i64, unit_price_cents: i64, quantity: u32) -> LineInput {
        LineInput {
            product_id,
            unit_price_cents,
            quantity,
        }
    }

    fn percent(code: &str, bps: u32, min: i64) -> CouponRule {
        CouponRule {
            code: code.into(),
            kind: CouponKind::Percent { bps },
            min_subtotal_cents: min,
            expires_at: None,
        }
    }

    fn fixed(code: &str, cents: i64, min: i64) -> CouponRule {
        CouponRule {
            code: code.into(),
            kind: CouponKind::Fixed { cents },
            min_subtotal_cents: min,
            expires_at: None,
        }
    }

    fn standard(lines: &[LineInput], coupon: CouponInput<'_>) -> Quote {
        quote(lines, &PriceRules::standard(), coupon, None, now()).unwrap()
    }

    #[test]
    fn rounding_is_half_to_even() {
        // 25 × 10 % = 2.5 → 2; 35 × 10 % = 3.5 → 4; 26 × 10 % = 2.6 → 3; 24 × 10 % = 2.4 → 2.
        assert_eq!(share(25, 1_000), Ok(2));
        assert_eq!(share(35, 1_000), Ok(4));
        assert_eq!(share(26, 1_000), Ok(3));
        assert_eq!(share(24, 1_000), Ok(2));
        assert_eq!(share(0, 1_000), Ok(0));
        assert_eq!(share(i64::MAX, FULL_BPS), Ok(i64::MAX));
        assert_eq!(share(i64::MAX, 0), Ok(0));
    }

    #[test]
    fn worked_example() {
        // 2 × 10.00 (no tier), 5 × 3.33 = 16.65 with 5 % off (0.8325 → 0.83) = 15.82,
        // 10 × 1.25 = 12.50 with 10 % off (1.25) = 11.25; subtotal 47.07.
        // WELCOME10: 10 % of 47.07 = 4.707 → 4.71; taxable 42.36; 19 % = 8.0484 → 8.05.
        let lines = [line(1, 1_000, 2), line(2, 333, 5), line(3, 125, 10)];
        let coupon = percent("WELCOME10", 1_000, 0);
        let q = standard(&lines, CouponInput::Known(&coupon));
        let totals: Vec<_> = q
            .lines
            .iter()
            .map(|l| (l.gross_cents, l.tier_discount_cents, l.total_cents))
            .collect();
        assert_eq!(
            totals,
            [(2_000, 0, 2_000), (1_665, 83, 1_582), (1_250, 125, 1_125)]
        );
        assert_eq!(q.lines[1].tier_discount_bps, 500);
        assert_eq!(q.lines[2].tier_discount_bps, 1_000);
        assert_eq!(q.subtotal_cents, 4_707);
        assert_eq!(q.discount_cents, 471);
        assert_eq!((q.region.as_str(), q.tax_rate_bps), ("EU-DE", 1_900));
        assert_eq!(q.tax_cents, 805);
        assert_eq!(q.total_cents, 4_707 - 471 + 805);
        assert!(q.coupon.unwrap().applied);
    }

    #[test]
    fn regions_choose_the_tax_rate() {
        let lines = [line(1, 10_000, 1)];
        let rules = PriceRules::standard();
        let us = quote(&lines, &rules, CouponInput::None, Some("US-CA"), now()).unwrap();
        assert_eq!((us.tax_cents, us.total_cents), (725, 10_725));
        let oregon = quote(&lines, &rules, CouponInput::None, Some("US-OR"), now()).unwrap();
        assert_eq!(oregon.total_cents, 10_000);
        assert_eq!(
            quote(&lines, &rules, CouponInput::None, Some("MARS"), now()),
            Err(PriceError::UnknownRegion("MARS".into()))
        );
    }

    #[test]
    fn invalid_lines_are_errors() {
        let rules = PriceRules::standard();
        let run = |lines: &[LineInput]| quote(lines, &rules, CouponInput::None, None, now());
        assert!(matches!(
            run(&[line(1, 100, 0)]),
            Err(PriceError::QuantityOutOfRange { quantity: 0, .. })
        ));
        assert!(matches!(
            run(&[line(1, 100, 100)]),
            Err(PriceError::QuantityOutOfRange { quantity: 100, .. })
        ));
        assert_eq!(
            run(&[line(1, 100, 1), line(1, 100, 2)]),
            Err(PriceError::DuplicateProduct(1))
        );
        assert_eq!(run(&[line(7, -1, 1)]), Err(PriceError::NegativePrice(7)));
        let many: Vec<_> = (1..=51).map(|id| line(id, 100, 1)).collect();
        assert_eq!(run(&many), Err(PriceError::TooManyLines(51)));
        assert!(run(&many[..50]).is_ok());
        assert_eq!(run(&[line(1, i64::MAX, 2)]), Err(PriceError::Overflow));
        let huge: Vec<_> = (1..=3).map(|id| line(id, i64::MAX / 2, 1)).collect();
        assert_eq!(run(&huge), Err(PriceError::Overflow));
        // An empty quote is valid and free (an empty cart is priced this way).
        assert_eq!(run(&[]).unwrap().total_cents, 0);
    }

    #[test]
    fn coupon_rules() {
        let lines = [line(1, 2_000, 1)];
        let below = percent("BIG", 1_000, 2_001);
        let q = standard(&lines, CouponInput::Known(&below));
        assert_eq!(
            q.coupon_rejection(),
            Some(("BIG", CouponRejection::BelowMinimum))
        );
        assert_eq!(q.discount_cents, 0);
        let at_minimum = percent("BIG", 1_000, 2_000);
        assert_eq!(
            standard(&lines, CouponInput::Known(&at_minimum)).discount_cents,
            200
        );

        let mut expired = percent("OLD", 1_000, 0);
        expired.expires_at = Some(now());
        let q = standard(&lines, CouponInput::Known(&expired));
        assert_eq!(
            q.coupon_rejection(),
            Some(("OLD", CouponRejection::Expired))
        );
        expired.expires_at = Some(now() + Duration::milliseconds(1));
        assert!(
            standard(&lines, CouponInput::Known(&expired))
                .coupon_rejection()
                .is_none()
        );

        let q = standard(&lines, CouponInput::Unknown("NOPE"));
        assert_eq!(
            q.coupon_rejection(),
            Some(("NOPE", CouponRejection::Unknown))
        );
        assert_eq!(q.total_cents, 2_380);

        let big_fixed = fixed("TENNER", 5_000, 0);
        let q = standard(&lines, CouponInput::Known(&big_fixed));
        assert_eq!(
            (q.discount_cents, q.tax_cents, q.total_cents),
            (2_000, 0, 0)
        );
    }

    fn arb_lines() -> impl Strategy<Value = Vec<LineInput>> {
        proptest::collection::btree_map(1_i64..10_000, (0_i64..10_000_000, 1_u32..=99), 0..=50)
            .prop_map(|m| {
                m.into_iter()
                    .map(|(id, (price, qty))| line(id, price, qty))
                    .collect()
            })
            .prop_shuffle()
    }

    fn arb_coupon() -> impl Strategy<Value = Option<CouponRule>> {
        let kind = prop_oneof![
            (0_u32..=10_000).prop_map(|bps| CouponKind::Percent { bps }),
            (0_i64..1_000_000_000).prop_map(|cents| CouponKind::Fixed { cents }),
        ];
        let expiry = proptest::option::of(-1_000_i64..1_000);
        proptest::option::of(
            (kind, 0_i64..100_000_000, expiry).prop_map(|(kind, min, expiry)| CouponRule {
                code: "PROP".into(),
                kind,
                min_subtotal_cents: min,
                expires_at: expiry.map(|s| now() + Duration::seconds(s)),
            }),
        )
    }

    fn arb_region() -> impl Strategy<Value = Option<&'static str>> {
        proptest::option::of(proptest::sample::select(
            TAX_RATES.iter().map(|t| t.region).collect::<Vec<_>>(),
        ))
    }

    fn input(coupon: &Option<CouponRule>) -> CouponInput<'_> {
        coupon
            .as_ref()
            .map_or(CouponInput::None, CouponInput::Known)
    }

    proptest! {
        #[test]
        fn totals_add_up_and_are_never_negative(
            lines in arb_lines(), coupon in arb_coupon(), region in arb_region(),
        ) {
            let q = quote(&lines, &PriceRules::standard(), input(&coupon), region, now()).unwrap();
            prop_assert_eq!(q.lines.len(), lines.len());
            let mut sum = 0;
            for (l, input) in q.lines.iter().zip(&lines) {
                prop_assert_eq!(l.product_id, input.product_id);
                prop_assert_eq!(l.gross_cents, input.unit_price_cents * i64::from(input.quantity));
                prop_assert_eq!(l.total_cents, l.gross_cents - l.tier_discount_cents);
                prop_assert!(l.tier_discount_cents >= 0 && l.total_cents >= 0);
                sum += l.total_cents;
            }
            prop_assert_eq!(q.subtotal_cents, sum);
            prop_assert!(q.discount_cents >= 0 && q.discount_cents <= q.subtotal_cents);
            prop_assert!(q.tax_cents >= 0);
            prop_assert_eq!(q.total_cents, q.subtotal_cents - q.discount_cents + q.tax_cents);
            prop_assert!(q.total_cents >= 0);
        }

        #[test]
        fn same_input_same_output_in_any_line_order(
            lines in arb_lines(), coupon in arb_coupon(), region in arb_region(),
            seed in any::<u64>(),
        ) {
            let rules = PriceRules::standard();
            let a = quote(&lines, &rules, input(&coupon), region, now()).unwrap();
            let b = quote(&lines, &rules, input(&coupon), region, now()).unwrap();
            prop_assert_eq!(&a, &b);
            let mut permuted = lines.clone();
            // A deterministic rotation and reversal chosen by the seed.
            if !permuted.is_empty() {
                let k = usize::try_from(seed % permuted.len() as u64).unwrap();
                permuted.rotate_left(k);
            }
            if seed % 2 == 0 {
                permuted.reverse();
            }
            let c = quote(&permuted, &rules, input(&coupon), region, now()).unwrap();
            prop_assert_eq!(
                (a.subtotal_cents, a.discount_cents, a.tax_cents, a.total_cents),
                (c.subtotal_cents, c.discount_cents, c.tax_cents, c.total_cents)
            );
            let mut la = a.lines.clone();
            let mut lc = c.lines.clone();
            la.sort_by_key(|l| l.product_id);
            lc.sort_by_key(|l| l.product_id);
            prop_assert_eq!(la, lc);
        }

        #[test]
        fn coupons_apply_only_by_their_rules(lines in arb_lines(), coupon in arb_coupon()) {
            let rules = PriceRules::standard();
            let without = quote(&lines, &rules, CouponInput::None, None, now()).unwrap();
            let with = quote(&lines, &rules, input(&coupon), None, now()).unwrap();
            // The coupon never changes the lines or the subtotal, only the discount after it.
            prop_assert_eq!(&with.lines, &without.lines);
            prop_assert_eq!(with.subtotal_cents, without.subtotal_cents);
            let subtotal = with.subtotal_cents;
            match &coupon {
                None => {
                    prop_assert!(with.coupon.is_none());
                    prop_assert_eq!(with.discount_cents, 0);
                }
                Some(rule) => {
                    let outcome = with.coupon.clone().unwrap();
                    let expired = rule.expires_at.is_some_and(|at| now() >= at);
                    let below = subtotal < rule.min_subtotal_cents;
                    let expected = if expired {
                        Some(CouponRejection::Expired)
                    } else if below {
                        Some(CouponRejection::BelowMinimum)
                    } else {
                        None
                    };
                    prop_assert_eq!(outcome.rejection, expected);
                    prop_assert_eq!(outcome.applied, expected.is_none());
                    // One coupon: the order's discount is exactly this coupon's.
                    prop_assert_eq!(outcome.discount_cents, with.discount_cents);
                    if expected.is_some() {
                        prop_assert_eq!(with.discount_cents, 0);
                        prop_assert_eq!(with.total_cents, without.total_cents);
                    } else {
                        let wanted = match rule.kind {
                            CouponKind::Percent { bps } => share(subtotal, bps).unwrap(),
                            // A fixed coupon never takes the subtotal below zero.
                            CouponKind::Fixed { cents } => cents.min(subtotal),
                        };
                        prop_assert_eq!(with.discount_cents, wanted);
                        prop_assert!(with.total_cents <= without.total_cents);
                    }
                }
            }
            let unknown = quote(&lines, &rules, CouponInput::Unknown("X"), None, now()).unwrap();
            prop_assert_eq!(unknown.coupon_rejection(), Some(("X", CouponRejection::Unknown)));
            prop_assert_eq!(unknown.total_cents, without.total_cents);
        }

        #[test]
        fn tiers_never_raise_the_unit_price(price in 0_i64..10_000_000, qty in 1_u32..=99) {
            let q = quote(&[line(1, price, qty)], &PriceRules::standard(), CouponInput::None,
                None, now()).unwrap();
            let l = &q.lines[0];
            prop_assert!(l.total_cents <= l.gross_cents);
            let expected_bps = if qty >= 10 { 1_000 } else if qty >= 5 { 500 } else { 0 };
            prop_assert_eq!(l.tier_discount_bps, expected_bps);
        }
    }
}
