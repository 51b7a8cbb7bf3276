//! Display currencies: prices are integer cents of one base currency everywhere (store,
//! quotes, orders); the storefront shows them converted at a configured rate into the currency
//! a visitor picked, kept in the `strata_currency` cookie. Conversion is for display only:
//! what is charged is the base amount, shown next to the converted total at checkout.
//!
//! The table is one text key (`web.currencies`): `CODE=rate` entries separated by commas, the
//! first being the base currency at rate 1, e.g. `EUR=1, USD=1.08, GBP=0.85, JPY=162`.

use std::fmt::Write as _;

/// The cookie that keeps a visitor's display currency (its three-letter code).
pub const CURRENCY_COOKIE: &str = "strata_currency";
/// How long a browser keeps the choice: a year.
const CURRENCY_COOKIE_MAX_AGE_SECS: u64 = 365 * 24 * 3600;
/// Rates are held in millionths, so conversion is integer arithmetic.
const RATE_SCALE: i128 = 1_000_000;
/// Most currencies in one table: the picker stays short.
const MAX_CURRENCIES: usize = 16;

/// One display currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Currency {
    /// ISO 4217 code, upper case (`USD`).
    pub code: String,
    /// Units of this currency per unit of the base, in millionths (1.08 → 1 080 000).
    rate_micros: i128,
    /// Digits after the decimal point (0 for yen, 2 for most).
    decimals: u32,
    /// What goes before the amount (`$`, `€`), or the code and a space.
    symbol: String,
}

impl Currency {
    /// `cents` of the base currency in this currency's minor units, rounded half up.
    fn minor_units(&self, cents: i64) -> i128 {
        let num = i128::from(cents) * self.rate_micros * 10_i128.pow(self.decimals);
        let den = 100 * RATE_SCALE;
        if num >= 0 {
            (num + den / 2) / den
        } else {
            (num - den / 2) / den
        }
    }

    /// `cents` of the base currency, converted and written for people: `$1,234.50`.
    pub fn format(&self, cents: i64) -> String {
        let minor = self.minor_units(cents);
        let unit = 10_i128.pow(self.decimals);
        let (whole, fraction) = (minor.abs() / unit, minor.abs() % unit);
        let digits = whole.to_string();
        let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        let mut text = String::new();
        if minor < 0 {
            text.push('-');
        }
        text.push_str(&self.symbol);
        text.push_str(&grouped);
        if self.decimals > 0 {
            let _ = write!(text, ".{fraction:0width$}", width = self.decimals as usize);
        }
        text
    }

    /// An amount typed in this currency (`12`, `12.5`, `12.50`) as cents of the base currency
    /// (rounded down, so a bound typed as a displayed price includes that product); `None`
    /// when it is not a plain non-negative amount.
    pub fn parse_amount(&self, text: &str) -> Option<i64> {
        let text = text.trim();
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || whole.len() > 12 || !plain(whole) || !plain(fraction) {
            return None;
        }
        if fraction.len() > self.decimals as usize {
            return None;
        }
        let unit = 10_i128.pow(self.decimals);
        let fraction_units = if fraction.is_empty() {
            0
        } else {
            fraction.parse::<i128>().ok()? * 10_i128.pow(self.decimals - fraction.len() as u32)
        };
        let minor = whole.parse::<i128>().ok()? * unit + fraction_units;
        let cents = minor * 100 * RATE_SCALE / (self.rate_micros * unit);
        i64::try_from(cents).ok()
    }
}

/// The display currencies: the base first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Currencies(Vec<Currency>);

/// The table `strata up` and `strata serve` use unless `web.currencies` says otherwise.
pub const DEFAULT_CURRENCIES: &str = "EUR=1, USD=1.08, GBP=0.85, JPY=162";

impl Default for Currencies {
    fn default() -> Self {
        // The default table is a constant that the tests parse.
        Self::parse(DEFAULT_CURRENCIES).unwrap_or_else(|_| {
            Self(vec![Currency {
                code: "EUR".into(),
                rate_micros: RATE_SCALE,
                decimals: 2,
                symbol: "€".into(),
            }])
        })
    }
}

impl Currencies {
    /// Parses `CODE=rate, …` (see the module docs).
    ///
    /// # Errors
    /// A sentence naming the first bad entry: not `CODE=rate`, a code that is not three
    /// letters, a rate that is not a positive decimal with at most 6 decimals, a repeated code,
    /// a base whose rate is not 1, none or more than 16 entries.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut currencies: Vec<Currency> = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (code, rate) = entry
                .split_once('=')
                .ok_or_else(|| format!("`{entry}`: expected CODE=rate"))?;
            let code = code.trim().to_ascii_uppercase();
            if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!("`{entry}`: a currency code is three letters"));
            }
            let rate_micros = parse_rate(rate.trim()).filter(|r| *r > 0).ok_or_else(|| {
                format!("`{entry}`: the rate must be a positive number, at most 6 decimals")
            })?;
            if currencies.iter().any(|c| c.code == code) {
                return Err(format!("`{code}` is listed twice"));
            }
            let (symbol, decimals) = match code.as_str() {
                "EUR" => ("€".to_owned(), 2),
                "USD" => ("$".to_owned(), 2),
                "GBP" => ("£".to_owned(), 2),
                "JPY" => ("¥".to_owned(), 0),
                "KRW" => ("₩".to_owned(), 0),
                other => (format!("{other} "), 2),
            };
            currencies.push(Currency {
                code,
                rate_micros,
                decimals,
                symbol,
            });
        }
        match currencies.first() {
            None => return Err("at least one currency (the base) is needed".into()),
            Some(base) if base.rate_micros != RATE_SCALE => {
                return Err(format!(
                    "the base currency `{}` must have rate 1",
                    base.code
                ));
            }
            _ => {}
        }
        if currencies.len() > MAX_CURRENCIES {
            return Err(format!("at most {MAX_CURRENCIES} currencies"));
        }
        Ok(Self(currencies))
    }

    /// The base currency: prices are cents of it.
    pub fn base(&self) -> &Currency {
        // `parse` guarantees one entry at least; `Default` builds one.
        &self.0[0]
    }

    /// Every currency, the base first.
    pub fn all(&self) -> &[Currency] {
        &self.0
    }

    /// The currency with this code, if listed.
    pub fn find(&self, code: &str) -> Option<&Currency> {
        self.0.iter().find(|c| c.code.eq_ignore_ascii_case(code))
    }

    /// The currency the request's cookie names, else the base.
    pub(crate) fn chosen(&self, headers: &axum::http::HeaderMap) -> &Currency {
        super::cookie(headers, CURRENCY_COOKIE)
            .and_then(|code| self.find(code))
            .unwrap_or_else(|| self.base())
    }
}

/// The `Set-Cookie` value that keeps `code` as the display currency.
pub(crate) fn currency_cookie(code: &str) -> String {
    format!(
        "{CURRENCY_COOKIE}={code}; Path=/; Max-Age={CURRENCY_COOKIE_MAX_AGE_SECS}; HttpOnly; \
         SameSite=Lax"
    )
}

/// A decimal rate (`1`, `0.85`, `162`) in millionths.
fn parse_rate(text: &str) -> Option<i128> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 9 || !plain(whole) || !plain(fraction) {
        return None;
    }
    if fraction.len() > 6 {
        return None;
    }
    let micros = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<i128>().ok()? * 10_i128.pow(6 - fraction.len() as u32)
    };
    Some(whole.parse::<i128>().ok()? * RATE_SCALE + micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_table_parses_with_the_base_first() {
        let table = Currencies::parse(DEFAULT_CURRENCIES).unwrap();
        assert_eq!(table, Currencies::default());
        assert_eq!(table.base().code, "EUR");
        assert_eq!(table.all().len(), 4);
        assert_eq!(table.find("usd").unwrap().code, "USD");
        assert!(table.find("XXX").is_none());
    }

    #[test]
    fn amounts_convert_and_format() {
        let table = Currencies::parse("EUR=1, USD=1.08, JPY=162, CHF=0.94").unwrap();
        assert_eq!(table.base().format(123_456), "€1,234.56");
        assert_eq!(table.base().format(5), "€0.05");
        // 10.00 € at 1.08 is 10.80 $; 10.00 € at 162 is 1 620 ¥.
        assert_eq!(table.find("USD").unwrap().format(1_000), "$10.80");
        assert_eq!(table.find("JPY").unwrap().format(1_000), "¥1,620");
        assert_eq!(table.find("CHF").unwrap().format(1_000), "CHF 9.40");
        assert_eq!(table.base().format(-250), "-€2.50");
    }

    #[test]
    fn typed_amounts_become_base_cents() {
        let table = Currencies::default();
        assert_eq!(table.base().parse_amount("12"), Some(1_200));
        assert_eq!(table.base().parse_amount("12.5"), Some(1_250));
        assert_eq!(table.base().parse_amount(" 0.05 "), Some(5));
        // 10.80 $ is 10.00 €.
        assert_eq!(
            table.find("USD").unwrap().parse_amount("10.80"),
            Some(1_000)
        );
        assert_eq!(table.find("JPY").unwrap().parse_amount("1620"), Some(1_000));
        for bad in [
            "",
            "-1",
            "1e3",
            "1.234",
            "abc",
            "1,5",
            ".5",
            "9999999999999",
        ] {
            assert_eq!(table.base().parse_amount(bad), None, "{bad:?}");
        }
        assert_eq!(table.find("JPY").unwrap().parse_amount("1.5"), None);
    }

    #[test]
    fn bad_tables_are_refused() {
        for bad in [
            "",
            "EUR",
            "EUR=1, USD=0",
            "USD=1.08",
            "EURO=1",
            "EUR=1, EUR=1",
            "EUR=1, USD=-1",
            "EUR=1, USD=1.0000001",
        ] {
            assert!(Currencies::parse(bad).is_err(), "{bad:?}");
        }
    }
}
