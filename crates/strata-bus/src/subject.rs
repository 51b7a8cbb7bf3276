//! Subjects, filters and names: parsed once at the bus boundary, so both backends agree on
//! what is valid and on which stream (family) a subject belongs to.
//!
//! A subject is dot-separated tokens, at least two: the first token is the *family*
//! (`orders` in `orders.placed`), which names the stream holding it. A filter is a subject
//! whose tokens after the family may be `*` (exactly one token) or, last, `>` (one or more).

use crate::error::{BusError, Result};

/// Checks a publish subject and returns its family.
pub(crate) fn family_of_subject(subject: &str) -> Result<&str> {
    let invalid = |reason| BusError::InvalidSubject {
        subject: subject.to_owned(),
        reason,
    };
    let family = check_tokens(subject).map_err(invalid)?;
    if subject.split('.').any(|token| token == "*" || token == ">") {
        return Err(invalid("wildcards are not allowed in a published subject"));
    }
    Ok(family)
}

/// A parsed subject filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    raw: String,
    tokens: Vec<String>,
}

impl Filter {
    /// Parses a filter such as `orders.>` or `chat.room.*`.
    pub(crate) fn parse(filter: &str) -> Result<Self> {
        let invalid = |reason| BusError::InvalidSubject {
            subject: filter.to_owned(),
            reason,
        };
        check_tokens(filter).map_err(invalid)?;
        let tokens: Vec<String> = filter.split('.').map(str::to_owned).collect();
        let last = tokens.len() - 1;
        if tokens[..last].iter().any(|token| token == ">") {
            return Err(invalid("`>` may only be the last token"));
        }
        Ok(Self {
            raw: filter.to_owned(),
            tokens,
        })
    }

    /// The family (first token), which names the stream the filter reads.
    pub(crate) fn family(&self) -> &str {
        &self.tokens[0]
    }

    /// The filter as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.raw
    }

    /// True when `subject` (without namespace) matches this filter.
    pub(crate) fn matches(&self, subject: &str) -> bool {
        let mut parts = subject.split('.');
        for token in &self.tokens {
            match (token.as_str(), parts.next()) {
                (">", Some(_)) => return true,
                (_, None) => return false,
                ("*", Some(_)) => {}
                (literal, Some(part)) if literal == part => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }
}

/// Checks the shape shared by subjects and filters; returns the family.
fn check_tokens(subject: &str) -> std::result::Result<&str, &'static str> {
    if subject.is_empty() {
        return Err("it is empty");
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains whitespace or control characters");
    }
    let mut tokens = subject.split('.');
    let family = tokens.next().unwrap_or_default();
    if family.is_empty() || subject.split('.').any(str::is_empty) {
        return Err("it has an empty token");
    }
    if !is_family(family) {
        return Err(FAMILY_RULE);
    }
    if tokens.next().is_none() {
        return Err("it needs at least two tokens: a family and a name (`orders.placed`)");
    }
    for token in subject.split('.') {
        if token.len() > 1 && (token.contains('*') || token.contains('>')) {
            return Err("`*` and `>` must be whole tokens");
        }
    }
    Ok(family)
}

/// What a family (a subject's first token) may be made of.
const FAMILY_RULE: &str =
    "the first token (family) must be lowercase ASCII letters, digits, `_` or `-`";

fn is_family(family: &str) -> bool {
    !family.is_empty()
        && family
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Checks a family given on its own (to the inspection calls), so that it names a stream the
/// way the first token of a subject does.
pub(crate) fn check_family(family: &str) -> Result<()> {
    if is_family(family) {
        Ok(())
    } else {
        Err(BusError::InvalidSubject {
            subject: family.to_owned(),
            reason: if family.is_empty() {
                "the family is empty"
            } else {
                FAMILY_RULE
            },
        })
    }
}

/// Checks a namespace: non-empty lowercase ASCII letters, digits and `-`.
///
/// `_` is excluded because it separates namespace and family in stream names
/// (`{NAMESPACE}_{FAMILY}`), and upper case because stream names are upper-cased: both keep
/// two namespaces from ever sharing a stream.
pub(crate) fn check_namespace(namespace: &str) -> Result<()> {
    let ok = !namespace.is_empty()
        && namespace
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(BusError::InvalidName {
            what: "namespace",
            value: namespace.to_owned(),
            reason: "use one or more lowercase ASCII letters, digits or `-`",
        })
    }
}

/// Checks a durable name: non-empty ASCII letters, digits, `_` and `-` (what NATS accepts in a
/// consumer name, minus the characters that are special in subjects).
pub(crate) fn check_durable(durable: &str) -> Result<()> {
    let ok = !durable.is_empty()
        && durable
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(BusError::InvalidName {
            what: "durable name",
            value: durable.to_owned(),
            reason: "use one or more ASCII letters, digits, `_` or `-`",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_need_a_family_and_a_name_without_wildcards() {
        assert_eq!(family_of_subject("orders.placed").unwrap(), "orders");
        assert_eq!(family_of_subject("chat.room.42").unwrap(), "chat");
        for bad in [
            "", "orders", "orders.", ".x", "a..b", "a.*", "a.>", "a b.c", "Orders.x", "a.b*",
        ] {
            assert!(family_of_subject(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn filters_match_like_nats() {
        let all = Filter::parse("orders.>").unwrap();
        assert_eq!(all.family(), "orders");
        assert!(all.matches("orders.placed"));
        assert!(all.matches("orders.a.b"));
        assert!(!all.matches("orders"));
        assert!(!all.matches("chat.x"));

        let star = Filter::parse("chat.room.*").unwrap();
        assert!(star.matches("chat.room.1"));
        assert!(!star.matches("chat.room.1.x"));
        assert!(!star.matches("chat.dm.1"));

        let exact = Filter::parse("chat.room.1").unwrap();
        assert!(exact.matches("chat.room.1"));
        assert!(!exact.matches("chat.room.10"));

        for bad in ["*.x", ">", "a.>.b", "orders", "a.b>"] {
            assert!(Filter::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn families_are_checked_on_their_own() {
        for good in ["orders", "chat", "a_b-1"] {
            assert!(check_family(good).is_ok(), "{good:?} refused");
        }
        for bad in ["", "Orders", "orders.placed", "a*", "a b"] {
            assert!(check_family(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_namespace("t0a1-b").is_ok());
        for bad in ["", "A", "a_b", "a.b"] {
            assert!(check_namespace(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_durable("Worker_1-a").is_ok());
        for bad in ["", "a.b", "a*", "a b"] {
            assert!(check_durable(bad).is_err(), "{bad:?} accepted");
        }
    }
}
