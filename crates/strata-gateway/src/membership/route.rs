//! Which pool a request goes to: the routing rules of `gateway.routes` compiled once per
//! configuration ([`Router`]), tried in order on each request's head without allocating, the
//! first match naming the pool ([`Destination`]) and what its rule changes on the way
//! ([`Actions`]: the path's prefix, request and response headers).

use std::sync::Arc;

use http::header::HOST;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::config::{ANY_VALUE, HeaderRules, RouteRule, route_problems};

/// The pools a rule can send requests to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Api,
    Chat,
}

impl Destination {
    /// Every destination; a destination's position here indexes per-pool tables.
    pub const ALL: [Self; 2] = [Self::Api, Self::Chat];

    /// The destination named `name` (`api`, `chat`).
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.pool_name() == name)
    }

    /// The pool this destination is.
    pub fn pool_name(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Chat => "chat",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// The compiled rules of a configuration, tried in order.
#[derive(Debug)]
pub struct Router {
    rules: Box<[Rule]>,
    /// Whether a rule matches on the host: if none does, it is not looked up.
    reads_host: bool,
}

/// One compiled rule.
#[derive(Debug)]
struct Rule {
    /// Lower case; `Suffix` keeps the leading dot (`.shop.example`).
    host: Option<HostMatch>,
    path_prefix: Box<str>,
    methods: Box<[Method]>,
    /// `None`: any value.
    headers: Box<[(HeaderName, Option<HeaderValue>)]>,
    destination: Destination,
    /// `None` when the rule changes nothing (the default rules): nothing to clone per request.
    actions: Option<Arc<Actions>>,
}

#[derive(Debug)]
enum HostMatch {
    Exact(Box<str>),
    Suffix(Box<str>),
}

/// What a matched rule changes on the way: the path's prefix, request and response headers.
#[derive(Debug)]
pub struct Actions {
    /// Bytes of the path the rule matched (its `path_prefix`), replaced by `replacement`.
    prefix_len: usize,
    replacement: Option<Box<str>>,
    request: HeaderEdits,
    response: HeaderEdits,
}

/// Headers set (replacing those of the same name) and removed.
#[derive(Debug, Default)]
pub struct HeaderEdits {
    set: Box<[(HeaderName, HeaderValue)]>,
    remove: Box<[HeaderName]>,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    pub destination: Destination,
    pub actions: Option<&'a Arc<Actions>>,
}

impl Router {
    /// Compiles `rules`.
    ///
    /// # Errors
    /// Every problem of the list (see [`route_problems`]), each naming its rule
    /// (`gateway.routes[1]: …`).
    pub fn compile(rules: &[RouteRule]) -> Result<Self, Vec<String>> {
        let problems = route_problems(rules);
        if !problems.is_empty() {
            return Err(problems
                .into_iter()
                .map(|(key, message)| format!("gateway.{key}: {message}"))
                .collect());
        }
        let mut compiled = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            compiled.push(
                Rule::compile(rule)
                    .map_err(|message| vec![format!("gateway.routes[{i}]: {message}")])?,
            );
        }
        Ok(Self {
            reads_host: compiled.iter().any(|rule| rule.host.is_some()),
            rules: compiled.into(),
        })
    }

    /// The first rule that matches `head`, if any. Compares bytes in place: no allocation.
    pub fn pick(&self, head: &Parts) -> Option<Matched<'_>> {
        let host = if self.reads_host {
            request_host(head)
        } else {
            &[]
        };
        let path = head.uri.path();
        self.rules
            .iter()
            .find(|rule| rule.matches(host, path, &head.method, &head.headers))
            .map(|rule| Matched {
                destination: rule.destination,
                actions: rule.actions.as_ref(),
            })
    }
}

impl Rule {
    fn compile(rule: &RouteRule) -> Result<Self, String> {
        let host = if rule.host.is_empty() {
            None
        } else {
            let host = rule.host.to_ascii_lowercase();
            Some(match host.strip_prefix('*') {
                Some(suffix) => HostMatch::Suffix(suffix.into()),
                None => HostMatch::Exact(host.into()),
            })
        };
        let methods = rule
            .methods
            .iter()
            .map(|m| Method::from_bytes(m.as_bytes()).map_err(|_| format!("method `{m}`")))
            .collect::<Result<_, _>>()?;
        let headers = rule
            .headers
            .iter()
            .map(|(name, value)| {
                let value = if value == ANY_VALUE {
                    None
                } else {
                    Some(header_value(value)?)
                };
                Ok((header_name(name)?, value))
            })
            .collect::<Result<_, String>>()?;
        let destination = Destination::named(&rule.pool)
            .ok_or_else(|| format!("pool `{}`: expected `api` or `chat`", rule.pool))?;
        let request = HeaderEdits::compile(&rule.request_headers)?;
        let response = HeaderEdits::compile(&rule.response_headers)?;
        let replacement = rule.replacement().map(Box::from);
        let actions =
            (replacement.is_some() || !request.is_empty() || !response.is_empty()).then(|| {
                Arc::new(Actions {
                    prefix_len: rule.path_prefix.len(),
                    replacement,
                    request,
                    response,
                })
            });
        Ok(Self {
            host,
            path_prefix: rule.path_prefix.as_str().into(),
            methods,
            headers,
            destination,
            actions,
        })
    }

    fn matches(&self, host: &[u8], path: &str, method: &Method, headers: &HeaderMap) -> bool {
        path.starts_with(&*self.path_prefix)
            && self.host.as_ref().is_none_or(|pattern| match pattern {
                HostMatch::Exact(name) => host.eq_ignore_ascii_case(name.as_bytes()),
                HostMatch::Suffix(suffix) => {
                    host.len() > suffix.len()
                        && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
                }
            })
            && (self.methods.is_empty() || self.methods.contains(method))
            && self.headers.iter().all(|(name, wanted)| match wanted {
                None => headers.contains_key(name),
                Some(value) => headers.get_all(name).iter().any(|v| v == value),
            })
    }
}

impl Actions {
    /// The request's target with the rule's prefix replaced, when the rule replaces it.
    pub fn rewrite(&self, uri: &Uri) -> Option<Uri> {
        let replacement = self.replacement.as_deref()?;
        let rest = uri.path().get(self.prefix_len..)?;
        let mut path = String::with_capacity(replacement.len() + rest.len() + 1);
        path.push_str(replacement);
        match (replacement.ends_with('/'), rest.strip_prefix('/')) {
            (true, Some(rest)) => path.push_str(rest),
            (false, None) if !rest.is_empty() => {
                path.push('/');
                path.push_str(rest);
            }
            _ => path.push_str(rest),
        }
        if let Some(query) = uri.query() {
            path.push('?');
            path.push_str(query);
        }
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = Some(PathAndQuery::try_from(path).ok()?);
        Uri::from_parts(parts).ok()
    }

    /// Applies the rule's request header edits.
    pub fn edit_request(&self, headers: &mut HeaderMap) {
        self.request.apply(headers);
    }

    /// Applies the rule's response header edits.
    pub fn edit_response(&self, headers: &mut HeaderMap) {
        self.response.apply(headers);
    }
}

impl HeaderEdits {
    fn compile(rules: &HeaderRules) -> Result<Self, String> {
        Ok(Self {
            set: rules
                .set
                .iter()
                .map(|(name, value)| Ok((header_name(name)?, header_value(value)?)))
                .collect::<Result<_, String>>()?,
            remove: rules
                .remove
                .iter()
                .map(|name| header_name(name))
                .collect::<Result<_, _>>()?,
        })
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }

    fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
    }
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("header name `{name}`"))
}

fn header_value(value: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(value).map_err(|_| format!("header value `{value}`"))
}

/// The host a request was sent to, without its port: the target's authority (absolute form,
/// HTTP/2's `:authority`), else the `Host` header; empty when there is neither.
fn request_host(head: &Parts) -> &[u8] {
    let authority = match head.uri.authority() {
        Some(authority) => authority.as_str().as_bytes(),
        None => head
            .headers
            .get(HOST)
            .map_or(&b""[..], HeaderValue::as_bytes),
    };
    // `user@` cannot reach here (hyper refuses it), an IPv6 literal keeps its brackets.
    if authority.first() == Some(&b'[') {
        let end = authority
            .iter()
            .position(|&b| b == b']')
            .map_or(authority.len(), |i| i + 1);
        return &authority[..end];
    }
    let end = authority
        .iter()
        .position(|&b| b == b':')
        .unwrap_or(authority.len());
    &authority[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_routes;

    fn head(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    fn destination(router: &Router, head: &Parts) -> Option<&'static str> {
        router.pick(head).map(|m| m.destination.pool_name())
    }

    #[test]
    fn the_default_rules_send_chat_paths_to_chat_and_everything_else_to_api() {
        let router = Router::compile(&default_routes()).unwrap();
        for (path, pool) in [
            ("/api/v1/chat/ws", "chat"),
            ("/api/v1/chat/rooms/1/messages", "chat"),
            ("/api/v1/chat", "api"),
            ("/api/v1/products", "api"),
            ("/", "api"),
            ("/docs", "api"),
        ] {
            let matched = router.pick(&head("GET", path, &[("host", "x")])).unwrap();
            assert_eq!(matched.destination.pool_name(), pool, "{path}");
            assert!(matched.actions.is_none(), "the defaults change nothing");
        }
    }

    #[test]
    fn hosts_methods_and_headers_narrow_a_rule() {
        let mut by_host = RouteRule::new("/", "chat");
        by_host.host = "*.Chat.example".into();
        let mut by_method = RouteRule::new("/", "chat");
        by_method.methods = vec!["DELETE".into()];
        let mut by_header = RouteRule::new("/", "chat");
        by_header.headers.insert("x-canary".into(), "1".into());
        by_header.headers.insert("x-team".into(), ANY_VALUE.into());
        let mut exact = RouteRule::new("/only/", "chat");
        exact.host = "shop.example".into();
        let rules = [
            by_host,
            by_method,
            by_header,
            exact,
            RouteRule::new("/", "api"),
        ];
        let router = Router::compile(&rules).unwrap();
        for (method, uri, headers, pool) in [
            ("GET", "/", &[("host", "eu.chat.EXAMPLE:8080")][..], "chat"),
            ("GET", "/", &[("host", "chat.example")][..], "api"),
            (
                "GET",
                "http://a.chat.example/x",
                &[("host", "other")][..],
                "chat",
            ),
            ("DELETE", "/", &[("host", "a")][..], "chat"),
            (
                "GET",
                "/",
                &[("host", "a"), ("x-canary", "1"), ("x-team", "")][..],
                "chat",
            ),
            (
                "GET",
                "/",
                &[("host", "a"), ("x-canary", "2"), ("x-team", "b")][..],
                "api",
            ),
            ("GET", "/", &[("host", "a"), ("x-canary", "1")][..], "api"),
            ("GET", "/only/x", &[("host", "SHOP.example:1")][..], "chat"),
            (
                "GET",
                "/only/x",
                &[("host", "shop.example.evil")][..],
                "api",
            ),
            ("GET", "/only/x", &[("host", "[::1]:80")][..], "api"),
        ] {
            let head = head(method, uri, headers);
            assert_eq!(
                destination(&router, &head),
                Some(pool),
                "{method} {uri} {headers:?}"
            );
        }
    }

    #[test]
    fn no_rule_may_match() {
        let mut rule = RouteRule::new("/", "api");
        rule.host = "shop.example".into();
        let router = Router::compile(&[rule]).unwrap();
        assert_eq!(
            destination(&router, &head("GET", "/", &[("host", "x")])),
            None
        );
        assert_eq!(destination(&router, &head("GET", "/", &[])), None);
    }

    #[test]
    fn prefixes_are_stripped_or_replaced_and_the_query_kept() {
        let rewrite = |prefix: &str, strip: bool, with: &str, uri: &str| {
            let mut rule = RouteRule::new(prefix, "api");
            rule.strip_prefix = strip;
            rule.rewrite_prefix = with.into();
            let router = Router::compile(&[rule]).unwrap();
            let head = head("GET", uri, &[("host", "a")]);
            let actions = router.pick(&head).unwrap().actions.unwrap();
            actions.rewrite(&head.uri).unwrap().to_string()
        };
        assert_eq!(
            rewrite("/shop/", true, "", "/shop/products?q=1"),
            "/products?q=1"
        );
        assert_eq!(rewrite("/shop", true, "", "/shop/products"), "/products");
        assert_eq!(rewrite("/shop", true, "", "/shop"), "/");
        assert_eq!(rewrite("/shop/", true, "", "/shop/"), "/");
        assert_eq!(rewrite("/v1/", false, "/v2/", "/v1/a/b"), "/v2/a/b");
        assert_eq!(rewrite("/v1", false, "/api/v2", "/v1/a"), "/api/v2/a");
        assert_eq!(rewrite("/old/", false, "/new", "/old/x"), "/new/x");
        assert_eq!(
            rewrite("/s/", true, "", "http://h.example/s/x?y"),
            "http://h.example/x?y"
        );
    }

    #[test]
    fn header_edits_set_and_remove() {
        let mut rule = RouteRule::new("/", "api");
        rule.request_headers
            .set
            .insert("x-env".into(), "prod".into());
        rule.request_headers.remove.push("x-debug".into());
        rule.response_headers
            .set
            .insert("cache-control".into(), "no-store".into());
        let router = Router::compile(&[rule]).unwrap();
        let head = head(
            "GET",
            "/",
            &[("host", "a"), ("x-debug", "1"), ("x-env", "dev")],
        );
        let actions = router.pick(&head).unwrap().actions.unwrap();
        let mut headers = head.headers.clone();
        actions.edit_request(&mut headers);
        assert_eq!(headers["x-env"], "prod");
        assert!(!headers.contains_key("x-debug"));
        assert!(actions.rewrite(&head.uri).is_none());
        let mut response = HeaderMap::new();
        actions.edit_response(&mut response);
        assert_eq!(response["cache-control"], "no-store");
    }

    #[test]
    fn bad_rules_do_not_compile() {
        let problems = Router::compile(&[]).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("gateway.routes: "), "{problems:?}");
        let problems = Router::compile(&[RouteRule::new("/", "db")]).unwrap_err();
        assert!(
            problems[0].starts_with("gateway.routes[0]: pool `db`"),
            "{problems:?}"
        );
    }
}
