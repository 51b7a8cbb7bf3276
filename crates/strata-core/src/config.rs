//! Typed configuration: built-in defaults, then a TOML file, then `STRATA_*` environment
//! variables, then command-line flags; each layer overrides the one before.
//!
//! Every key, its default and the reason for that default live in this file (and in the example
//! `strata.toml` at the repository root). Problems are collected and reported together, each
//! naming its key, so a broken deployment is fixed in one round trip.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Environment variables that start with this prefix are configuration overrides.
pub const ENV_PREFIX: &str = "STRATA_";

/// The whole configuration of a strata process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub log: LogConfig,
    pub store: StoreConfig,
    pub cache: CacheConfig,
    pub bus: BusConfig,
    pub gateway: GatewayConfig,
    pub api: RoleConfig,
    pub chat: RoleConfig,
    pub worker: RoleConfig,
}

/// How logs are written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter (`info`, `strata_gateway=debug,info`). Default `info`: one line per
    /// request and lifecycle event, nothing per byte.
    pub level: String,
    /// `json` (default: one object per line, for collectors) or `pretty` (for a terminal).
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Json,
        }
    }
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            other => Err(format!("expected `json` or `pretty`, got `{other}`")),
        }
    }
}

/// The relational store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://path` or `postgres://…`. Empty (default): `sqlite://<data_dir>/strata.db`, the
    /// embedded store that needs no server.
    pub database_url: String,
    /// Where the embedded store and generated secrets live. Default `./strata-data`.
    pub data_dir: PathBuf,
    /// Pool size per process. Default 16: enough for the api's concurrency on a small machine
    /// without exhausting PostgreSQL's default 100 connections across a few processes.
    pub max_connections: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            database_url: String::new(),
            data_dir: PathBuf::from("./strata-data"),
            max_connections: 16,
        }
    }
}

impl StoreConfig {
    /// The database URL to connect to: the configured one, or the SQLite file in the data dir.
    pub fn effective_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("strata.db").display())
        } else {
            self.database_url.clone()
        }
    }
}

/// The cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// `memory` (default, in process) or `redis://host:port`.
    pub url: String,
    /// Namespace of every key, so deployments sharing one Redis never collide. Default `strata`.
    pub prefix: String,
    /// Default time to live of cached reads in seconds. Default 60: writes invalidate entries,
    /// so the TTL only bounds how long a missed invalidation can linger.
    pub ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            url: "memory".into(),
            prefix: "strata".into(),
            ttl_secs: 60,
        }
    }
}

/// The message bus.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// `memory` (default, in process) or `nats://host:port` (JetStream).
    pub url: String,
    /// Namespace of streams and subjects. Default `strata`.
    pub namespace: String,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            url: "memory".into(),
            namespace: "strata".into(),
        }
    }
}

/// The gateway (load balancer).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Public listener. Default `127.0.0.1:8080`: loopback until an operator opens it.
    pub listen: SocketAddr,
    /// Admin API and `/metrics`. Default `127.0.0.1:9090`.
    pub admin_listen: SocketAddr,
    /// Time to connect to an instance, in milliseconds. Default 1000: instances are near, and a
    /// refused or silent connect should move on to another instance quickly.
    pub connect_timeout_ms: u64,
    /// Time for a whole proxied request, in milliseconds. Default 30000.
    pub request_timeout_ms: u64,
    /// Largest request body accepted, in bytes. Default 1 MiB: the shop's bodies are small JSON.
    pub max_body_bytes: u64,
    /// Pools of instances. Empty in `strata up`, which builds the pools from the instances it
    /// starts; `strata serve gateway` needs at least the `api` pool.
    pub pools: Vec<PoolConfig>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            connect_timeout_ms: 1000,
            request_timeout_ms: 30_000,
            max_body_bytes: 1024 * 1024,
            pools: Vec::new(),
        }
    }
}

/// One pool of interchangeable instances behind the gateway.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Pool name: `api` or `chat` (their routes are fixed by the design: `/api/v1/chat/` goes to
    /// `chat`, everything else to `api`).
    pub name: String,
    /// Base URLs of the instances, `http://host:port`.
    pub instances: Vec<String>,
}

/// A role that runs as one or more instances (api, chat, worker).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoleConfig {
    /// How many instances `strata up` starts. Ignored by `strata serve` (one per process).
    pub instances: usize,
    /// Address of the first instance; instance `i` (from 0) listens on port `port + i`.
    pub listen: SocketAddr,
}

impl RoleConfig {
    fn new(instances: usize, port: u16) -> Self {
        Self {
            instances,
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// The listen address of instance `index` (0-based). Port 0 stays 0 (the OS picks).
    pub fn instance_addr(&self, index: usize) -> SocketAddr {
        let mut addr = self.listen;
        if addr.port() != 0 {
            let offset = u16::try_from(index).unwrap_or(u16::MAX);
            addr.set_port(addr.port().saturating_add(offset));
        }
        addr
    }
}

impl Default for RoleConfig {
    fn default() -> Self {
        Self::new(1, 0)
    }
}

impl Config {
    /// Built-in defaults: 3 api instances on 8101…, 2 chat on 8201…, 1 worker on 8301.
    pub fn defaults() -> Self {
        Self {
            api: RoleConfig::new(3, 8101),
            chat: RoleConfig::new(2, 8201),
            worker: RoleConfig::new(1, 8301),
            ..Self::default()
        }
    }

    /// Loads defaults, then `file` (if any), then the `STRATA_*` variables of `env`, then
    /// `overrides` (key → value, from flags). Everything is validated before it returns.
    ///
    /// # Errors
    /// Every problem found, each naming its key.
    pub fn load<E, K, V>(
        file: Option<&Path>,
        env: E,
        overrides: &[(&str, String)],
    ) -> Result<Self, ConfigError>
    where
        E: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut config = match file {
            Some(path) => Self::from_file(path)?,
            None => Self::defaults(),
        };
        let mut problems = Vec::new();
        let env: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.as_ref().starts_with(ENV_PREFIX))
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        for (var, value) in &env {
            match env_key(var) {
                Some(key) => config.set(key, value, &mut problems),
                None => problems.push(Problem::new(var, "unknown configuration variable")),
            }
        }
        for (key, value) in overrides {
            config.set(key, value, &mut problems);
        }
        config.validate(&mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Reads a TOML file over the defaults.
    fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file: toml::Table = toml::from_str(&text).map_err(|e| {
            ConfigError::Invalid(vec![Problem::new(&path.display().to_string(), e.message())])
        })?;
        let mut merged = match toml::Value::try_from(Self::defaults()) {
            Ok(toml::Value::Table(table)) => table,
            _ => toml::Table::new(),
        };
        merge(&mut merged, file);
        serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Invalid(vec![Problem::new(&key, &e.inner().to_string())])
        })
    }

    /// Sets one key from its text form; a bad value or unknown key becomes a problem.
    pub fn set(&mut self, key: &str, value: &str, problems: &mut Vec<Problem>) {
        let mut put = |result: Result<(), String>| {
            if let Err(message) = result {
                problems.push(Problem::new(key, &message));
            }
        };
        match key {
            "log.level" => self.log.level = value.to_owned(),
            "log.format" => put(parse_into(value, &mut self.log.format)),
            "store.database_url" => self.store.database_url = value.to_owned(),
            "store.data_dir" => self.store.data_dir = PathBuf::from(value),
            "store.max_connections" => put(parse_into(value, &mut self.store.max_connections)),
            "cache.url" => self.cache.url = value.to_owned(),
            "cache.prefix" => self.cache.prefix = value.to_owned(),
            "cache.ttl_secs" => put(parse_into(value, &mut self.cache.ttl_secs)),
            "bus.url" => self.bus.url = value.to_owned(),
            "bus.namespace" => self.bus.namespace = value.to_owned(),
            "gateway.listen" => put(parse_into(value, &mut self.gateway.listen)),
            "gateway.admin_listen" => put(parse_into(value, &mut self.gateway.admin_listen)),
            "gateway.connect_timeout_ms" => {
                put(parse_into(value, &mut self.gateway.connect_timeout_ms))
            }
            "gateway.request_timeout_ms" => {
                put(parse_into(value, &mut self.gateway.request_timeout_ms))
            }
            "gateway.max_body_bytes" => put(parse_into(value, &mut self.gateway.max_body_bytes)),
            "gateway.upstream" => put(parse_upstreams(value).map(|pools| {
                for pool in pools {
                    self.gateway.pools.retain(|p| p.name != pool.name);
                    self.gateway.pools.push(pool);
                }
            })),
            "api.instances" => put(parse_into(value, &mut self.api.instances)),
            "api.listen" => put(parse_into(value, &mut self.api.listen)),
            "chat.instances" => put(parse_into(value, &mut self.chat.instances)),
            "chat.listen" => put(parse_into(value, &mut self.chat.listen)),
            "worker.instances" => put(parse_into(value, &mut self.worker.instances)),
            "worker.listen" => put(parse_into(value, &mut self.worker.listen)),
            _ => problems.push(Problem::new(key, "unknown configuration key")),
        }
    }

    /// Checks values that parse but make no sense.
    fn validate(&self, problems: &mut Vec<Problem>) {
        fn check(problems: &mut Vec<Problem>, ok: bool, key: &str, message: &str) {
            if !ok {
                problems.push(Problem::new(key, message));
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            problems.push(Problem::new("log.level", &e.to_string()));
        }
        let db = &self.store.database_url;
        check(
            problems,
            db.is_empty()
                || ["sqlite:", "postgres://", "postgresql://"]
                    .iter()
                    .any(|s| db.starts_with(s)),
            "store.database_url",
            "expected sqlite://PATH or postgres://…",
        );
        check(
            problems,
            (1..=1000).contains(&self.store.max_connections),
            "store.max_connections",
            "expected 1..=1000",
        );
        let cache = &self.cache.url;
        check(
            problems,
            cache == "memory" || cache.starts_with("redis://") || cache.starts_with("rediss://"),
            "cache.url",
            "expected `memory` or redis://host:port",
        );
        check(
            problems,
            self.cache.ttl_secs > 0,
            "cache.ttl_secs",
            "must be at least 1",
        );
        check(
            problems,
            valid_name(&self.cache.prefix),
            "cache.prefix",
            "expected letters, digits, `-` or `_`",
        );
        let bus = &self.bus.url;
        check(
            problems,
            bus == "memory" || bus.starts_with("nats://"),
            "bus.url",
            "expected `memory` or nats://host:port",
        );
        check(
            problems,
            valid_name(&self.bus.namespace),
            "bus.namespace",
            "expected letters, digits, `-` or `_`",
        );
        check(
            problems,
            self.gateway.connect_timeout_ms > 0,
            "gateway.connect_timeout_ms",
            "must be at least 1",
        );
        check(
            problems,
            self.gateway.request_timeout_ms > 0,
            "gateway.request_timeout_ms",
            "must be at least 1",
        );
        check(
            problems,
            self.gateway.max_body_bytes > 0,
            "gateway.max_body_bytes",
            "must be at least 1",
        );
        for (i, pool) in self.gateway.pools.iter().enumerate() {
            let key = format!("gateway.pools[{i}]");
            check(
                problems,
                ["api", "chat"].contains(&pool.name.as_str()),
                &key,
                "pool name must be `api` or `chat`",
            );
            check(
                problems,
                !pool.instances.is_empty(),
                &key,
                "a pool needs at least one instance",
            );
            for url in &pool.instances {
                if let Err(message) = parse_instance_url(url) {
                    problems.push(Problem::new(&key, &message));
                }
            }
        }
        for (name, role) in [
            ("api", &self.api),
            ("chat", &self.chat),
            ("worker", &self.worker),
        ] {
            check(
                problems,
                role.instances <= 64,
                &format!("{name}.instances"),
                "at most 64 instances per process",
            );
        }
        check(
            problems,
            self.api.instances >= 1,
            "api.instances",
            "at least 1 api instance is needed",
        );
    }
}

/// Maps `STRATA_API_INSTANCES` to `api.instances`: the first `_` after a known section splits it.
fn env_key(var: &str) -> Option<&'static str> {
    const KEYS: &[&str] = &[
        "log.level",
        "log.format",
        "store.database_url",
        "store.data_dir",
        "store.max_connections",
        "cache.url",
        "cache.prefix",
        "cache.ttl_secs",
        "bus.url",
        "bus.namespace",
        "gateway.listen",
        "gateway.admin_listen",
        "gateway.connect_timeout_ms",
        "gateway.request_timeout_ms",
        "gateway.max_body_bytes",
        "gateway.upstream",
        "api.instances",
        "api.listen",
        "chat.instances",
        "chat.listen",
        "worker.instances",
        "worker.listen",
    ];
    let rest = var.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
    KEYS.iter()
        .copied()
        .find(|key| key.replacen('.', "_", 1) == rest)
}

/// Parses `api=http://h:p,http://h:p;chat=http://h:p` (pools separated by `;`).
fn parse_upstreams(value: &str) -> Result<Vec<PoolConfig>, String> {
    value
        .split(';')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            let (name, urls) = part
                .split_once('=')
                .ok_or_else(|| format!("expected POOL=URL[,URL…], got `{part}`"))?;
            let instances: Vec<String> = urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
            for url in &instances {
                parse_instance_url(url)?;
            }
            Ok(PoolConfig {
                name: name.trim().to_owned(),
                instances,
            })
        })
        .collect()
}

/// Checks that an instance URL is `http://host:port` with nothing after the authority.
pub fn parse_instance_url(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("instance `{url}`: expected http://host:port"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("instance `{url}`: missing port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("instance `{url}`: bad port"))?;
    if host.is_empty() || rest.contains('/') {
        return Err(format!("instance `{url}`: expected http://host:port"));
    }
    Ok((host.to_owned(), port))
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn parse_into<T: FromStr>(value: &str, slot: &mut T) -> Result<(), String>
where
    T::Err: fmt::Display,
{
    *slot = value
        .trim()
        .parse()
        .map_err(|e| format!("`{value}`: {e}"))?;
    Ok(())
}

/// Deep-merges `over` into `base` (tables merge, other values replace).
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// One configuration problem, naming its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    fn new(key: &str, message: &str) -> Self {
        Self {
            key: key.to_owned(),
            message: message.to_owned(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)], overrides: &[(&str, String)]) -> Result<Config, ConfigError> {
        Config::load(None, env.iter().copied(), overrides)
    }

    fn problems(err: ConfigError) -> Vec<Problem> {
        match err {
            ConfigError::Invalid(p) => p,
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let config = load(&[], &[]).unwrap();
        assert_eq!(config.api.instances, 3);
        assert_eq!(config.chat.instances, 2);
        assert_eq!(config.api.instance_addr(2).port(), 8103);
        assert_eq!(config.gateway.listen.port(), 8080);
        assert!(
            config
                .store
                .effective_url()
                .ends_with("strata-data/strata.db")
        );
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let dir = std::env::temp_dir().join(format!("strata-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("strata.toml");
        std::fs::write(
            &file,
            "[api]\ninstances = 5\n[chat]\ninstances = 4\n[cache]\nttl_secs = 9\n",
        )
        .unwrap();
        let env = [
            ("STRATA_API_INSTANCES", "6"),
            ("STRATA_CHAT_INSTANCES", "7"),
            ("HOME", "/x"),
        ];
        let config = Config::load(Some(&file), env, &[("chat.instances", "8".into())]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(config.api.instances, 6, "env beats file");
        assert_eq!(config.chat.instances, 8, "flag beats env");
        assert_eq!(config.cache.ttl_secs, 9, "file beats default");
        assert_eq!(
            config.api.listen.port(),
            8101,
            "untouched keys keep defaults"
        );
    }

    #[test]
    fn all_problems_are_reported_with_their_keys() {
        let env = [
            ("STRATA_API_INSTANCES", "many"),
            ("STRATA_NOPE", "1"),
            ("STRATA_CACHE_URL", "mem"),
        ];
        let found = problems(load(&env, &[("bus.url", "kafka://x".into())]).unwrap_err());
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"api.instances"), "{keys:?}");
        assert!(keys.contains(&"STRATA_NOPE"), "{keys:?}");
        assert!(keys.contains(&"cache.url"), "{keys:?}");
        assert!(keys.contains(&"bus.url"), "{keys:?}");
    }

    #[test]
    fn file_errors_name_the_key() {
        let dir = std::env::temp_dir().join(format!("strata-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        std::fs::write(&file, "[api]\ninstances = \"three\"\n").unwrap();
        let err = Config::load(Some(&file), Vec::<(String, String)>::new(), &[]).unwrap_err();
        std::fs::write(&file, "[api]\nreplicas = 3\n").unwrap();
        let unknown = Config::load(Some(&file), Vec::<(String, String)>::new(), &[]).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.to_string().contains("api.instances"), "{err}");
        assert!(unknown.to_string().contains("replicas"), "{unknown}");
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
        let found =
            problems(load(&[], &[("gateway.upstream", "api=http://a".into())]).unwrap_err());
        assert_eq!(found[0].key, "gateway.upstream");
        let found =
            problems(load(&[], &[("gateway.upstream", "db=http://a:1".into())]).unwrap_err());
        assert_eq!(found[0].key, "gateway.pools[0]");
    }

    #[test]
    fn example_file_in_the_repository_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../strata.toml");
        let config = Config::load(Some(&path), Vec::<(String, String)>::new(), &[]).unwrap();
        assert_eq!(config.api.instances, 3);
    }
}
