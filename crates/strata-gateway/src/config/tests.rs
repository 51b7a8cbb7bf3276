//! Tests of the gateway's keys, loaded through a configuration that holds only `[gateway]`.

use serde::{Deserialize, Serialize};
use strata_core::ConfigError;
use strata_core::config::{Problem, Section};

use super::*;

config_section! {
    /// The gateway's section alone, composed as the binary composes the whole configuration.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Root {
        /// The gateway.
        section gateway: GatewayConfig = GatewayConfig::default(),
    }
}

fn load(env: &[(&str, &str)], overrides: &[(&str, String)]) -> Result<Root, ConfigError> {
    Root::load(None, env.iter().copied(), overrides)
}

fn problems(err: ConfigError) -> Vec<Problem> {
    match err {
        ConfigError::Invalid(p) => p,
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn upstreams_parse_into_pools() {
    let config = load(
        &[],
        &[(
            "gateway.upstream",
            "api=http://a:1,http://b:2;chat=http://c:3".into(),
        )],
    )
    .unwrap();
    assert_eq!(config.gateway.pools.len(), 2);
    assert_eq!(
        config.gateway.pools[0].instances,
        ["http://a:1", "http://b:2"]
    );
    let found = problems(load(&[], &[("gateway.upstream", "api=http://a".into())]).unwrap_err());
    assert_eq!(found[0].key, "gateway.upstream");
    let found = problems(load(&[], &[("gateway.upstream", "db=http://a:1".into())]).unwrap_err());
    assert_eq!(found[0].key, "gateway.pools[0]");
}

#[test]
fn pools_default_to_round_robin_for_api_and_room_hashing_for_chat() {
    let config = load(&[], &[]).unwrap().gateway;
    let (api, chat) = (&config.api, &config.chat);
    assert_eq!(
        (api.algorithm, &api.hash_key),
        (Algorithm::RoundRobin, &HashKey::ClientIp)
    );
    assert_eq!(
        (chat.algorithm, &chat.hash_key),
        (Algorithm::ConsistentHash, &HashKey::Query("room".into()))
    );
    for pool in [api, chat] {
        assert_eq!(pool.balance_factor, 1.25);
        assert_eq!(pool.sticky_cookie, "strata_affinity");
        assert!(pool.fail_open);
        assert_eq!(pool.health, HealthConfig::default());
    }
    let health = &api.health;
    assert_eq!(
        (health.path.as_str(), health.interval_ms, health.timeout_ms),
        ("/readyz", 500, 500)
    );
    assert_eq!((health.rise, health.fall, health.eject_after), (2, 2, 3));
    assert_eq!(
        (
            health.eject_base_ms,
            health.eject_max_ms,
            health.slow_start_ms
        ),
        (1000, 30_000, 5000)
    );
    assert_eq!(config.pool_settings("chat"), Some(chat));
    assert_eq!(config.pool_settings("db"), None);
}

#[test]
fn pool_settings_come_from_file_env_and_flags() {
    let dir = std::env::temp_dir().join(format!(
        "strata-gateway-config-{}-pool-settings",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("strata.toml");
    std::fs::write(
        &file,
        "[gateway.chat]\nfail_open = true\n[gateway.chat.health]\nrise = 4\n\
         [gateway.api]\nalgorithm = \"weighted_round_robin\"\n",
    )
    .unwrap();
    let env = [
        ("STRATA_GATEWAY_CHAT_HASH_KEY", "header:X-User"),
        ("STRATA_GATEWAY_API_HEALTH_INTERVAL_MS", "750"),
        ("STRATA_GATEWAY_API_BALANCE_FACTOR", "2.5"),
        ("STRATA_GATEWAY_API_PIPELINE_DEPTH", "8"),
        ("STRATA_GATEWAY_API_UPSTREAM_PROTOCOL", "http1"),
    ];
    let flags = [
        ("gateway.api.algorithm", "sticky".to_owned()),
        ("gateway.chat.health.eject_after", "0".to_owned()),
    ];
    let config = Root::load(Some(&file), env, &flags).unwrap().gateway;
    std::fs::remove_dir_all(&dir).unwrap();
    let (api, chat) = (&config.api, &config.chat);
    assert_eq!(api.algorithm, Algorithm::Sticky, "flag beats file");
    assert_eq!((api.health.interval_ms, api.balance_factor), (750, 2.5));
    assert_eq!((api.pipeline_depth, chat.pipeline_depth), (8, 1));
    assert_eq!(
        (api.upstream_protocol, chat.upstream_protocol),
        (UpstreamProtocol::Http1, UpstreamProtocol::H2c)
    );
    assert_eq!(
        chat.algorithm,
        Algorithm::ConsistentHash,
        "untouched keys of a partly set pool keep the pool's defaults"
    );
    assert_eq!(chat.hash_key, HashKey::Header("x-user".into()));
    assert!(chat.fail_open);
    assert_eq!((chat.health.rise, chat.health.fall), (4, 2));
    assert_eq!(chat.health.eject_after, 0);
}

#[test]
fn every_bad_pool_setting_is_reported_with_its_key() {
    let flags: Vec<(&str, String)> = [
        ("gateway.api.algorithm", "fastest"),
        ("gateway.api.hash_key", "body:x"),
        ("gateway.chat.hash_key", "jwt_subject"),
        ("gateway.api.balance_factor", "0.5"),
        ("gateway.api.pipeline_depth", "0"),
        ("gateway.chat.pipeline_depth", "257"),
        ("gateway.chat.upstream_protocol", "http3"),
        ("gateway.chat.sticky_cookie", "a b"),
        ("gateway.chat.health.path", "readyz"),
        ("gateway.chat.health.rise", "0"),
        ("gateway.chat.health.fall", "-1"),
        ("gateway.api.health.interval_ms", "100"),
        ("gateway.api.health.timeout_ms", "200"),
        ("gateway.api.health.eject_max_ms", "10"),
        ("gateway.api.colour", "blue"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    let found = problems(load(&[("STRATA_GATEWAY_CHAT_FAIL_OPEN", "maybe")], &flags).unwrap_err());
    let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "gateway.api.algorithm",
        "gateway.api.hash_key",
        "gateway.chat.hash_key",
        "gateway.api.balance_factor",
        "gateway.api.pipeline_depth",
        "gateway.chat.pipeline_depth",
        "gateway.chat.upstream_protocol",
        "gateway.chat.sticky_cookie",
        "gateway.chat.health.path",
        "gateway.chat.health.rise",
        "gateway.chat.health.fall",
        "gateway.api.health.timeout_ms",
        "gateway.api.health.eject_max_ms",
        "gateway.api.colour",
        "gateway.chat.fail_open",
    ] {
        assert!(keys.contains(&key), "{key} not reported in {keys:?}");
    }
    assert_eq!(found.len(), 15, "{found:?}");
}

#[test]
fn gateway_workers_default_to_one_per_cpu_and_are_bounded() {
    assert_eq!(GatewayConfig::default().workers, 0);
    let config = load(&[("STRATA_GATEWAY_WORKERS", "3")], &[]).unwrap();
    assert_eq!(config.gateway.workers, 3);
    let found = problems(load(&[], &[("gateway.workers", "257".to_owned())]).unwrap_err());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].key, "gateway.workers");
}

#[test]
fn serving_keys_are_checked_together() {
    let found = problems(
        load(
            &[
                ("STRATA_GATEWAY_ADMIN_LISTEN", "0.0.0.0:9090"),
                ("STRATA_GATEWAY_TLS_CERT", "/c.pem"),
                ("STRATA_GATEWAY_CONNECT_TIMEOUT_MS", "0"),
            ],
            &[],
        )
        .unwrap_err(),
    );
    let found: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(
        found,
        [
            "gateway.connect_timeout_ms: must be at least 1 (from STRATA_GATEWAY_CONNECT_TIMEOUT_MS)",
            "gateway.admin_token: required when gateway.admin_listen is not a loopback address",
            "gateway.tls_key: gateway.tls_cert and gateway.tls_key go together: set both or neither",
        ]
    );
}

#[test]
fn a_reload_names_the_changed_keys_it_cannot_apply() {
    let old = GatewayConfig::default();
    let mut new = old.clone();
    new.api.algorithm = Algorithm::Random;
    new.chat.health.rise = 5;
    new.pools = vec![PoolConfig::new("api", vec!["http://a:1".into()])];
    new.tls_cert = "/c.pem".into();
    assert!(old.needs_restart(&new).is_empty(), "all live");
    new.tls_key = "/k.pem".into();
    new.listen = SocketAddr::from(([0, 0, 0, 0], 8080));
    new.workers = 2;
    new.admin_token = Secret::new("0123456789abcdef");
    assert_eq!(
        old.needs_restart(&new),
        [
            "gateway.listen",
            "gateway.workers",
            "gateway.admin_token",
            "gateway.tls_cert"
        ]
    );
}

#[test]
fn hash_keys_parse_and_print_back() {
    for (text, key) in [
        ("cookie:sid", HashKey::Cookie("sid".into())),
        ("header:x-user", HashKey::Header("x-user".into())),
        ("query:room", HashKey::Query("room".into())),
        ("client_ip", HashKey::ClientIp),
        ("jwt_subject", HashKey::JwtSubject),
    ] {
        assert_eq!(text.parse::<HashKey>().unwrap(), key);
        assert_eq!(key.to_string(), text);
    }
    for bad in [
        "",
        "cookie:",
        "query:a&b",
        "header:bad header",
        "ip",
        "path:/x",
    ] {
        assert!(bad.parse::<HashKey>().is_err(), "{bad} accepted");
    }
}

#[test]
fn instance_urls_carry_weight_and_in_flight_limit() {
    let plain = parse_instance_url("http://10.0.0.5:8101").unwrap();
    assert_eq!(
        (
            plain.host.as_str(),
            plain.port,
            plain.weight,
            plain.max_in_flight
        ),
        ("10.0.0.5", 8101, 1, 0)
    );
    assert_eq!(plain.address(), "10.0.0.5:8101");
    let full = parse_instance_url("http://h:1/?weight=5&max_in_flight=100").unwrap();
    assert_eq!((full.weight, full.max_in_flight), (5, 100));
    assert_eq!(
        parse_instance_url("http://[::1]:2?weight=1000")
            .unwrap()
            .host,
        "[::1]"
    );
    for bad in [
        "http://h:1?weight=0",
        "http://h:1?weight=1001",
        "http://h:1?weight=x",
        "http://h:1?max_in_flight=-1",
        "http://h:1?colour=blue",
        "http://h:1/path?weight=2",
        "https://h:1",
    ] {
        assert!(parse_instance_url(bad).is_err(), "{bad} accepted");
    }
    let config = load(
        &[],
        &[(
            "gateway.upstream",
            "api=http://a:1?weight=5,http://b:2;chat=http://c:3?max_in_flight=7".into(),
        )],
    )
    .unwrap();
    assert_eq!(
        config.gateway.pools[0].instances,
        ["http://a:1?weight=5", "http://b:2"]
    );
    let found = problems(
        load(
            &[],
            &[("gateway.upstream", "api=http://a:1?weight=0".into())],
        )
        .unwrap_err(),
    );
    assert_eq!(found[0].key, "gateway.upstream");
}

/// Loads `text` as a configuration file.
fn load_file(name: &str, text: &str) -> Result<Root, ConfigError> {
    let dir = std::env::temp_dir().join(format!(
        "strata-gateway-config-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("strata.toml");
    std::fs::write(&file, text).unwrap();
    let loaded = Root::load(Some(&file), std::iter::empty::<(&str, &str)>(), &[]);
    std::fs::remove_dir_all(&dir).unwrap();
    loaded
}

#[test]
fn routes_default_to_the_chat_split_and_come_from_the_file() {
    assert_eq!(load(&[], &[]).unwrap().gateway.routes, default_routes());
    let routes = load_file(
        "routes",
        r#"
[[gateway.routes]]
host = "*.shop.example"
path_prefix = "/shop/"
methods = ["GET", "HEAD"]
headers = { x-canary = "1" }
pool = "chat"
strip_prefix = true
request_headers = { set = { x-env = "prod" }, remove = ["x-debug"] }
response_headers = { set = { cache-control = "no-store" } }

[[gateway.routes]]
pool = "api"
"#,
    )
    .unwrap()
    .gateway
    .routes;
    assert_eq!(routes.len(), 2);
    let first = &routes[0];
    assert_eq!(
        (
            first.host.as_str(),
            first.path_prefix.as_str(),
            first.pool.as_str()
        ),
        ("*.shop.example", "/shop/", "chat")
    );
    assert_eq!(first.methods, ["GET", "HEAD"]);
    assert_eq!(first.headers["x-canary"], "1");
    assert_eq!(first.replacement(), Some("/"));
    assert_eq!(first.request_headers.set["x-env"], "prod");
    assert_eq!(first.request_headers.remove, ["x-debug"]);
    assert_eq!(first.response_headers.set["cache-control"], "no-store");
    assert_eq!(routes[1], RouteRule::new("/", "api"));
}

#[test]
fn every_bad_rule_is_reported_with_its_place() {
    let found = problems(
        load_file(
            "bad-routes",
            r#"
[[gateway.routes]]
pool = "api"

[[gateway.routes]]
path_prefix = "/docs?x"
pool = "db"
methods = ["get"]
response_headers = { remove = ["transfer-encoding"] }
"#,
        )
        .unwrap_err(),
    );
    assert_eq!(found.len(), 5, "{found:?}");
    assert!(
        found.iter().all(|p| p.key == "gateway.routes[1]"),
        "{found:?}"
    );
    let empty = problems(load_file("no-routes", "[gateway]\nroutes = []\n").unwrap_err());
    assert_eq!(empty.len(), 1, "{empty:?}");
    assert_eq!(empty[0].key, "gateway.routes");
}

#[test]
fn compression_is_on_by_default_and_set_per_pool() {
    let config = load(&[], &[]).unwrap().gateway;
    for pool in [&config.api, &config.chat] {
        let compression = &pool.compression;
        assert!(compression.enabled);
        assert_eq!(compression.min_bytes, 1024);
        assert_eq!(compression.encodings, [Encoding::Br, Encoding::Gzip]);
        assert!(
            compression
                .content_types
                .contains(&"application/json".to_owned())
        );
    }
    let config = load(
        &[
            ("STRATA_GATEWAY_CHAT_COMPRESSION_ENABLED", "false"),
            ("STRATA_GATEWAY_API_COMPRESSION_ENCODINGS", "gzip"),
        ],
        &[(
            "gateway.api.compression.content_types",
            "text/*, Application/JSON".to_owned(),
        )],
    )
    .unwrap()
    .gateway;
    assert!(!config.chat.compression.enabled);
    assert_eq!(config.api.compression.encodings, [Encoding::Gzip]);
    assert_eq!(
        config.api.compression.content_types,
        ["text/*", "application/json"]
    );
    let found = problems(
        load(
            &[
                ("STRATA_GATEWAY_API_COMPRESSION_ENCODINGS", "zstd"),
                ("STRATA_GATEWAY_CHAT_COMPRESSION_ENCODINGS", ""),
                ("STRATA_GATEWAY_CHAT_COMPRESSION_CONTENT_TYPES", "*/*"),
                ("STRATA_GATEWAY_API_COMPRESSION_MIN_BYTES", "-1"),
            ],
            &[],
        )
        .unwrap_err(),
    );
    let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "gateway.api.compression.encodings",
            "gateway.api.compression.min_bytes",
            "gateway.chat.compression.encodings",
            "gateway.chat.compression.content_types",
        ]
    );
}
