//! One routing rule of `[[gateway.routes]]` ([`RouteRule`]): what a request must look like
//! (host, path prefix, methods, headers), the pool it then goes to, and what is changed on the
//! way (the path's prefix, request and response headers); and the checks of a rule list,
//! every problem named at once ([`route_problems`]).

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue, Method};
use serde::{Deserialize, Serialize};

use super::algorithm::is_token;
use crate::proxy::headers::is_hop_by_hop;

/// The pools a rule may name.
pub const ROUTE_POOLS: [&str; 2] = ["api", "chat"];

/// A header value in a rule's `headers` that matches any value of a header present.
pub const ANY_VALUE: &str = "*";

/// A routing rule: a request that matches every condition given (an absent one matches
/// anything) goes to `pool`. Rules are tried in order; the first that matches wins.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Host name the request was sent to (`Host`, or the target's authority), port ignored,
    /// letters in any case: `shop.example`, or `*.shop.example` for any name below it.
    /// Empty (the default): any host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Start of the request path, compared as written (`/api/v1/chat/` matches
    /// `/api/v1/chat/ws`, not `/api/v1/chat`). Default `/`: every path.
    #[serde(default = "root", skip_serializing_if = "is_root")]
    pub path_prefix: String,
    /// Request methods (`["GET", "HEAD"]`). Empty (the default): any method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Headers the request must carry, each with exactly this value, or `*` for any value
    /// (`{ x-canary = "1" }`). Empty (the default): no condition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The pool the request goes to: `api` or `chat`.
    pub pool: String,
    /// Forward the path without `path_prefix` (`/shop/products` under `/shop/` becomes
    /// `/products`). Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub strip_prefix: bool,
    /// Forward the path with `path_prefix` replaced by this (`/v2/` for `/v1/`). Default
    /// empty: the path is forwarded as it came (or stripped, with `strip_prefix`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rewrite_prefix: String,
    /// Headers set on (replacing any of the same name) and removed from the request before
    /// it is forwarded.
    #[serde(default, skip_serializing_if = "HeaderRules::is_empty")]
    pub request_headers: HeaderRules,
    /// Headers set on and removed from the response before it goes back to the client.
    #[serde(default, skip_serializing_if = "HeaderRules::is_empty")]
    pub response_headers: HeaderRules,
}

/// Headers a rule sets and removes: `{ set = { x-env = "prod" }, remove = ["x-debug"] }`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HeaderRules {
    /// Name → value, each replacing every header of that name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Names removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl HeaderRules {
    /// Whether the rules change nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

impl RouteRule {
    /// A rule sending the paths under `path_prefix` to `pool`.
    pub fn new(path_prefix: &str, pool: &str) -> Self {
        Self {
            path_prefix: path_prefix.to_owned(),
            pool: pool.to_owned(),
            ..Self::default()
        }
    }

    /// The prefix the forwarded path starts with instead of `path_prefix`, when the rule
    /// changes it.
    pub fn replacement(&self) -> Option<&str> {
        if !self.rewrite_prefix.is_empty() {
            Some(&self.rewrite_prefix)
        } else if self.strip_prefix {
            Some("/")
        } else {
            None
        }
    }

    /// Whether every request this rule matches is matched by `self` too (so `later`, after
    /// `self`, can never match).
    fn covers(&self, later: &RouteRule) -> bool {
        let host = self.host.is_empty()
            || self.host.eq_ignore_ascii_case(&later.host)
            || self.host.strip_prefix('*').is_some_and(|suffix| {
                later.host.len() > suffix.len()
                    && later
                        .host
                        .to_ascii_lowercase()
                        .ends_with(&suffix.to_ascii_lowercase())
            });
        let methods = self.methods.is_empty()
            || (!later.methods.is_empty()
                && later.methods.iter().all(|m| self.methods.contains(m)));
        let headers = self.headers.iter().all(|(name, value)| {
            later
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .is_some_and(|(_, v)| value == ANY_VALUE || v == value)
        });
        host && later.path_prefix.starts_with(&self.path_prefix) && methods && headers
    }

    /// What is wrong with the rule alone.
    fn problems(&self, out: &mut Vec<String>) {
        if !ROUTE_POOLS.contains(&self.pool.as_str()) {
            out.push(format!("pool `{}`: expected `api` or `chat`", self.pool));
        }
        if !is_host_pattern(&self.host) {
            out.push(format!(
                "host `{}`: expected a host name such as shop.example or *.shop.example",
                self.host
            ));
        }
        if !self.path_prefix.starts_with('/')
            || self.path_prefix.parse::<http::uri::PathAndQuery>().is_err()
            || self.path_prefix.contains(['?', '#'])
        {
            out.push(format!(
                "path_prefix `{}`: expected a path starting with /",
                self.path_prefix
            ));
        }
        for method in &self.methods {
            if !is_token(method) || Method::from_bytes(method.as_bytes()).is_err() {
                out.push(format!("methods: `{method}` is not a method"));
            } else if method.to_ascii_uppercase() != *method {
                out.push(format!(
                    "methods: `{method}`: methods are case-sensitive, write `{}`",
                    method.to_ascii_uppercase()
                ));
            }
        }
        for (name, value) in &self.headers {
            header_name(name, "headers", out);
            if HeaderValue::from_str(value).is_err() {
                out.push(format!("headers: `{name}`: invalid value `{value}`"));
            }
        }
        if self.strip_prefix && !self.rewrite_prefix.is_empty() {
            out.push("strip_prefix and rewrite_prefix: set one or the other".to_owned());
        }
        if !self.rewrite_prefix.is_empty()
            && (!self.rewrite_prefix.starts_with('/')
                || self
                    .rewrite_prefix
                    .parse::<http::uri::PathAndQuery>()
                    .is_err()
                || self.rewrite_prefix.contains(['?', '#']))
        {
            out.push(format!(
                "rewrite_prefix `{}`: expected a path starting with /",
                self.rewrite_prefix
            ));
        }
        for (rules, what) in [
            (&self.request_headers, "request_headers"),
            (&self.response_headers, "response_headers"),
        ] {
            for (name, value) in &rules.set {
                editable(name, what, out);
                if HeaderValue::from_str(value).is_err() {
                    out.push(format!("{what}: `{name}`: invalid value `{value}`"));
                }
            }
            for name in &rules.remove {
                editable(name, what, out);
            }
        }
    }
}

/// The default rule set: the WebSocket, history and presence of `/api/v1/chat/` go to the
/// chat pool, every other request to api.
pub fn default_routes() -> Vec<RouteRule> {
    vec![
        RouteRule::new("/api/v1/chat/", "chat"),
        RouteRule::new("/", "api"),
    ]
}

/// Every problem of a rule list, each with the key it concerns (`routes[2]`, below the
/// gateway's section): an empty list, a rule that is wrong alone, a rule that can never match
/// because one before it matches every request it would.
pub fn route_problems(rules: &[RouteRule]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    if rules.is_empty() {
        found.push((
            "routes".to_owned(),
            "at least one rule is needed (the default sends /api/v1/chat/ to chat and every other \
             path to api)"
                .to_owned(),
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        let key = format!("routes[{i}]");
        let mut problems = Vec::new();
        rule.problems(&mut problems);
        if let Some(j) = rules[..i].iter().position(|earlier| earlier.covers(rule)) {
            problems.push(format!(
                "can never match: routes[{j}] before it matches every request it would"
            ));
        }
        found.extend(problems.into_iter().map(|p| (key.clone(), p)));
    }
    found
}

/// A header name a rule may set or remove: valid, and neither hop-by-hop nor framing (those
/// belong to each connection, and the gateway writes them itself).
fn editable(name: &str, what: &str, out: &mut Vec<String>) {
    if let Some(parsed) = header_name(name, what, out)
        && (is_hop_by_hop(&parsed) || parsed == http::header::CONTENT_LENGTH)
    {
        out.push(format!(
            "{what}: `{name}` belongs to the connection and cannot be set or removed"
        ));
    }
}

fn header_name(name: &str, what: &str, out: &mut Vec<String>) -> Option<HeaderName> {
    let parsed = HeaderName::from_bytes(name.as_bytes()).ok();
    if parsed.is_none() {
        out.push(format!("{what}: `{name}` is not a header name"));
    }
    parsed
}

/// Empty, a host name, or `*.` and a host name.
fn is_host_pattern(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    host.is_empty()
        || (!name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }))
}

fn root() -> String {
    "/".to_owned()
}

fn is_root(path: &str) -> bool {
    path == "/"
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_false(value: &bool) -> bool {
    !*value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(f: impl FnOnce(&mut RouteRule)) -> RouteRule {
        let mut rule = RouteRule::new("/", "api");
        f(&mut rule);
        rule
    }

    fn keys_and_messages(rules: &[RouteRule]) -> Vec<String> {
        route_problems(rules)
            .into_iter()
            .map(|(k, m)| format!("{k}: {m}"))
            .collect()
    }

    #[test]
    fn the_default_rules_are_sound() {
        assert!(route_problems(&default_routes()).is_empty());
    }

    #[test]
    fn an_empty_list_and_bad_rules_are_reported_each() {
        assert_eq!(route_problems(&[]).len(), 1);
        let found = keys_and_messages(&[
            rule(|r| {
                r.pool = "db".into();
                r.host = "a b".into();
                r.path_prefix = "api".into();
            }),
            rule(|r| {
                r.methods = vec!["get".into(), "G T".into()];
                r.headers.insert("bad name".into(), "1".into());
                r.headers.insert("x-ok".into(), "new\nline".into());
                r.path_prefix = "/x/".into();
            }),
            rule(|r| {
                r.path_prefix = "/y/".into();
                r.strip_prefix = true;
                r.rewrite_prefix = "z".into();
                r.request_headers
                    .set
                    .insert("connection".into(), "x".into());
                r.response_headers.remove.push("content-length".into());
                r.response_headers.set.insert("x-a".into(), "\u{7f}".into());
            }),
        ]);
        assert_eq!(found.len(), 12, "{found:#?}");
        assert!(found[0].starts_with("routes[0]: pool `db`"));
        assert!(found.iter().any(|p| p.contains("write `GET`")));
        assert!(found.iter().all(|p| !p.contains("can never match")));
    }

    #[test]
    fn rules_after_a_catch_all_or_a_wider_rule_are_dead() {
        let found = keys_and_messages(&[
            RouteRule::new("/api/", "api"),
            RouteRule::new("/api/v1/", "chat"),
            rule(|r| r.host = "*.shop.example".into()),
            rule(|r| r.host = "eu.shop.example".into()),
            rule(|r| {
                r.host = "shop.example".into();
                r.headers.insert("x-canary".into(), "1".into());
            }),
            RouteRule::new("/", "api"),
            RouteRule::new("/docs", "chat"),
        ]);
        assert_eq!(
            found,
            [
                "routes[1]: can never match: routes[0] before it matches every request it would",
                "routes[3]: can never match: routes[2] before it matches every request it would",
                "routes[6]: can never match: routes[5] before it matches every request it would",
            ]
        );
        // Narrower conditions first are fine, whatever their order otherwise.
        let fine = [
            rule(|r| r.methods = vec!["POST".into()]),
            rule(|r| {
                r.headers.insert("x-canary".into(), ANY_VALUE.into());
            }),
            rule(|r| r.host = "shop.example".into()),
            RouteRule::new("/", "chat"),
        ];
        assert!(route_problems(&fine).is_empty());
        // A header with any value covers the same header with one value.
        let dead = [
            rule(|r| {
                r.headers.insert("x-canary".into(), ANY_VALUE.into());
            }),
            rule(|r| {
                r.headers.insert("X-Canary".into(), "1".into());
            }),
        ];
        assert_eq!(route_problems(&dead).len(), 1);
    }

    #[test]
    fn replacements_follow_strip_and_rewrite() {
        assert_eq!(RouteRule::new("/a/", "api").replacement(), None);
        assert_eq!(rule(|r| r.strip_prefix = true).replacement(), Some("/"));
        assert_eq!(
            rule(|r| r.rewrite_prefix = "/v2/".into()).replacement(),
            Some("/v2/")
        );
    }
}
