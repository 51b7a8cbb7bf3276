//! [`Email`]: an email address, parsed once at the boundary and lowercased, so the store's
//! UNIQUE constraint treats `Ann@Example.com` and `ann@example.com` as one account.

use std::fmt;
use std::str::FromStr;

/// A plausible email address in lowercase ASCII.
///
/// Accepted: `local@domain` with a local part of 1 to 64 characters from the unquoted
/// RFC 5322 set (letters, digits, ``!#$%&'*+/=?^_`{|}~.-``, no leading, trailing or double
/// dot) and a domain of at least two dot-separated labels (letters, digits, inner hyphens, 1 to
/// 63 characters each, the last not all digits); 254 characters at most in all (RFC 5321).
/// Refused, on purpose: quoted local parts, IP-literal domains and non-ASCII addresses, which
/// a shop does not need and which make addresses that look alike.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// The longest address accepted (RFC 5321's path limit less the angle brackets).
    pub const MAX_LEN: usize = 254;

    /// The address, lowercase.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Why a string is not an acceptable email address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a valid email address: {0}")]
pub struct InvalidEmail(&'static str);

impl FromStr for Email {
    type Err = InvalidEmail;

    /// Trims surrounding whitespace, lowercases, then checks the rules above.
    fn from_str(raw: &str) -> Result<Email, InvalidEmail> {
        let address = raw.trim().to_ascii_lowercase();
        if address.is_empty() {
            return Err(InvalidEmail("empty"));
        }
        if address.len() > Self::MAX_LEN {
            return Err(InvalidEmail("longer than 254 characters"));
        }
        if !address.is_ascii() {
            return Err(InvalidEmail("only ASCII addresses are accepted"));
        }
        let (local, domain) = address.rsplit_once('@').ok_or(InvalidEmail("no `@`"))?;
        check_local(local)?;
        check_domain(domain)?;
        Ok(Email(address))
    }
}

fn check_local(local: &str) -> Result<(), InvalidEmail> {
    if local.is_empty() || local.len() > 64 {
        return Err(InvalidEmail(
            "the part before `@` must have 1 to 64 characters",
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c);
    if !local.chars().all(allowed) {
        return Err(InvalidEmail("unexpected character before `@`"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(InvalidEmail("misplaced dot before `@`"));
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), InvalidEmail> {
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(InvalidEmail("the domain needs a dot"));
    }
    for label in &labels {
        let ok = (1..=63).contains(&label.len())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(InvalidEmail("malformed domain"));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(InvalidEmail("malformed domain"));
    }
    Ok(())
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_trimmed_and_lowercased() {
        let email: Email = "  Ann.Lee+shop@Example.CO.uk ".parse().unwrap();
        assert_eq!(email.as_str(), "ann.lee+shop@example.co.uk");
    }

    #[test]
    fn bad_addresses_are_refused() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_total = format!("a@{}.com", "b".repeat(250));
        for bad in [
            "",
            "   ",
            "plain",
            "@example.com",
            "ann@",
            "ann@example",
            "ann@@example.com",
            "ann@exa mple.com",
            "ann lee@example.com",
            "ann@-example.com",
            "ann@example-.com",
            "ann@example..com",
            ".ann@example.com",
            "ann.@example.com",
            "a..b@example.com",
            "ann@example.123",
            "\"ann\"@example.com",
            "ann@[127.0.0.1]",
            "ännä@example.com",
            "ann@exämple.com",
            "ann<x>@example.com",
            long_local.as_str(),
            long_total.as_str(),
        ] {
            assert!(bad.parse::<Email>().is_err(), "{bad:?} accepted");
        }
        for good in [
            "a@b.co",
            "x_y-z@sub.domain.example",
            "o'brien@example.ie",
            "1@2.io",
        ] {
            assert!(good.parse::<Email>().is_ok(), "{good:?} refused");
        }
    }
}
