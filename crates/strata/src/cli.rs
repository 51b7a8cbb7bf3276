//! The command line: global flags, the commands, and how flags become configuration keys.
//!
//! Flags are the last layer of the configuration (defaults < `--config` file < `STRATA_*`
//! variables < flags): each flag is turned into a `(key, value)` override and handed to
//! [`Config::load`], so a bad flag value is reported by the same code, naming the same key, as a
//! bad file entry or variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use strata_core::ConfigError;
use strata_core::config::{FROM_FLAG, Problem, Section};

use crate::config::Config;

/// The variable naming the config file. It is read by clap, not by [`Config::load`], which
/// would reject it as an unknown `STRATA_*` key.
const CONFIG_VAR: &str = "STRATA_CONFIG";
/// The chat client's token (`strata chat --token`).
const CHAT_TOKEN_VAR: &str = "STRATA_CHAT_TOKEN";
/// The worker's admin token for `strata events --token`.
const EVENTS_TOKEN_VAR: &str = "STRATA_EVENTS_TOKEN";
/// The URL `strata health` checks when none is given (containers set it per role).
const HEALTH_URL_VAR: &str = "STRATA_HEALTH_URL";
/// The token of `strata bench --scenario chat` (kept out of the process list).
const BENCH_TOKEN_VAR: &str = "STRATA_BENCH_TOKEN";
/// Variables that belong to flags, not to the configuration.
const FLAG_VARS: [&str; 5] = [
    CONFIG_VAR,
    CHAT_TOKEN_VAR,
    EVENTS_TOKEN_VAR,
    HEALTH_URL_VAR,
    BENCH_TOKEN_VAR,
];

/// strata: a shop with live support chat, its load balancer and its load generator, in one
/// binary.
#[derive(Debug, Parser)]
#[command(name = "strata", version, propagate_version = true)]
pub struct Cli {
    /// Configuration file (TOML); see strata.toml for every key and its default.
    #[arg(long, global = true, env = CONFIG_VAR, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log filter, e.g. `info` or `strata_gateway=debug,info` (key `log.level`).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Log format on stderr (key `log.format`).
    #[arg(long, global = true, value_name = "FORMAT", value_parser = ["json", "pretty"])]
    pub log_format: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole stack in this process: the gateway, N api, M chat and K worker instances,
    /// on an embedded SQLite store, an in-memory cache and an in-memory bus (by default).
    Up(UpArgs),
    /// Run one role in this process against the configured store, cache and bus.
    Serve(ServeArgs),
    /// Put load on a URL, closed loop (saturation) or open loop (a set or stepped rate,
    /// latency from each request's intended send time), one endpoint or the shop mix; print a
    /// summary (or `--json`, `--markdown`). Exits 1 when not one request succeeded.
    Bench(BenchArgs),
    /// Chat in a room from the terminal: prints the room's messages, sends each line typed
    /// (`/quit` leaves); reconnects and resumes when the server drains or drops.
    Chat(ChatArgs),
    /// The event pipeline, through a worker's endpoints: per-stream figures, dead letters,
    /// replay.
    Events(EventsArgs),
    /// Probe an endpoint (e.g. a role's `/readyz`): exit 0 when it answers 2xx in time, 1
    /// otherwise. Needs no shell or curl, so a container image can use it as its health check.
    Health(HealthArgs),
    /// Write a consistent copy of the embedded SQLite store to FILE, also while strata serves
    /// and writes to it. A PostgreSQL store has its own tools (pg_dump, pg_basebackup).
    Backup(BackupArgs),
    /// Replace the embedded SQLite store with FILE (a backup), once FILE is checked; refused
    /// while a strata has the store open.
    Restore(RestoreArgs),
    /// The stateful-vs-stateless experiment: runs the cart service with local carts
    /// (stateful) and with shared carts (stateless) as `strata serve` processes of this
    /// executable on loopback, under the same load, and writes the claims table with the
    /// figures measured (report.md, report.html with charts, report.json).
    Lab(LabArgs),
}

#[derive(Debug, Args)]
pub struct LabArgs {
    /// A short run for CI (about two minutes): fewer carts, shorter and slower load.
    #[arg(long)]
    pub quick: bool,
    /// Directory of the report, process logs and data; made if missing. Default
    /// `strata-lab/<timestamp>/`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the copy; it appears complete or not at all.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Replace FILE when it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup to put in place of the store.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Which store `strata backup` and `strata restore` work on.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Directory of the embedded store (key `store.data_dir`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// sqlite://PATH of the store, when it is not `<data dir>/strata.db` (key
    /// `store.database_url`).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The endpoint to probe, e.g. http://127.0.0.1:8101/readyz.
    #[arg(value_name = "URL", env = HEALTH_URL_VAR)]
    pub url: String,
    /// Seconds to wait for the answer (more than 0, at most 3600).
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = probe_timeout)]
    pub timeout: std::time::Duration,
}

/// `--timeout` of `strata health`: a bad value is a usage error (exit code 2), like any flag.
fn probe_timeout(text: &str) -> Result<std::time::Duration, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 3600.0 => Ok(std::time::Duration::from_secs_f64(secs)),
        _ => Err(format!("expected seconds in (0, 3600], got `{text}`")),
    }
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// A worker's operational endpoints.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:8301",
        global = true
    )]
    pub url: String,
    /// The worker's `worker.admin_token`, when it has one.
    #[arg(long, value_name = "TOKEN", env = EVENTS_TOKEN_VAR, global = true)]
    pub token: Option<String>,
    /// Print the worker's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: EventsCommand,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Per stream: published, stored; per consumer: lag, unacknowledged; dead letters; the
    /// outbox events not yet relayed.
    Stats,
    /// The dead-letter stream: events a handler gave up on.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first.
    List {
        /// First id to show.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Most to show (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Publish dead letters again on their subjects (all of them when no id is given) and
    /// remove them from the dead-letter stream.
    Replay {
        /// Ids from `dlq list`.
        ids: Vec<u64>,
    },
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The room: `support-<user id>` or `lobby-<name>`. Default: a customer's own support
    /// room (support and admin accounts must name one).
    #[arg(long, value_name = "ROOM")]
    pub room: Option<String>,
    /// A token from `POST /api/v1/sessions`; prefer the variable `STRATA_CHAT_TOKEN`, since a
    /// flag is visible to every user of the machine (`ps`).
    #[arg(long, value_name = "JWT", env = CHAT_TOKEN_VAR, hide_env_values = true)]
    pub token: String,
    /// The gateway (or a chat instance) to connect to.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Show the room's messages after this id first. Default: those after the last one this
    /// client showed in the room (kept in `$XDG_STATE_HOME/strata/chat-last-seen.json`), or
    /// only new ones on a first visit.
    #[arg(long, value_name = "ID")]
    pub after: Option<i64>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of api instances (key `api.instances`).
    #[arg(long, value_name = "N")]
    pub api: Option<usize>,
    /// Number of chat instances (key `chat.instances`).
    #[arg(long, value_name = "M")]
    pub chat: Option<usize>,
    /// Moves every port of the stack by N: the gateway's two, and the first api, chat and
    /// worker port (from the configuration's, 8080, 9090, 8101, 8201, 8301 by default), so a
    /// second stack runs beside the first with one flag. `auto` lets the OS pick a free port
    /// for every listener instead (the banner says where each one listens). `--port` and
    /// `--admin-port` still set their port exactly; port 0 (the OS picks) stays 0.
    #[arg(long, value_name = "N|auto")]
    pub port_offset: Option<PortOffset>,
    /// Port of the public listener (the port of key `gateway.listen`).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Port of the admin listener (the port of key `gateway.admin_listen`).
    #[arg(long, value_name = "PORT")]
    pub admin_port: Option<u16>,
    /// Directory of the embedded store (key `store.data_dir`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// The value of `--port-offset`: a shift of every port, or free ports chosen by the OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortOffset {
    /// Add this to every listen port.
    By(u16),
    /// Listen on port 0 everywhere: the OS picks free ports.
    Auto,
}

impl std::str::FromStr for PortOffset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(Self::Auto);
        }
        s.parse()
            .map(Self::By)
            .map_err(|_| format!("expected a number from 0 to 65535 or `auto`, got `{s}`"))
    }
}

/// The roles `strata serve` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    Gateway,
    Api,
    Chat,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Api => "api",
            Role::Chat => "chat",
            Role::Worker => "worker",
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The role to run.
    #[arg(value_enum)]
    pub role: Role,
    /// Listen address of the role (key `<role>.listen`, `gateway.listen` for the gateway).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Admin listen address of the gateway (key `gateway.admin_listen`).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// sqlite://PATH or postgres://… (key `store.database_url`).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// `memory` or redis://host:port (key `cache.url`).
    #[arg(long, value_name = "URL")]
    pub cache: Option<String>,
    /// `memory` or nats://host:port (key `bus.url`).
    #[arg(long, value_name = "URL")]
    pub bus: Option<String>,
    /// A pool of the gateway: `api=http://h:p,http://h:p` (key `gateway.upstream`); repeat
    /// the flag for the `chat` pool.
    #[arg(long, value_name = "POOL=URL,…")]
    pub upstream: Vec<String>,
    /// Instance name, sent in `X-Strata-Instance` and in the answers of `/healthz` and
    /// `/readyz`. Default `<role>@<listen address>`.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Target, e.g. http://127.0.0.1:8080/api/v1/products.
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// What to send: `endpoint` (the URL's path, or each --path in turn), `shop` (customers
    /// who register, log in, browse, search, fill carts, quote and check out) or `chat`
    /// (--listeners in each of --rooms and a sender per room, messages at --rate).
    #[arg(long, value_name = "NAME", default_value = "endpoint")]
    pub scenario: String,
    /// Connections: each sends one request at a time (closed loop), or at most this many are
    /// opened at once (--rate).
    #[arg(long, short = 'c', value_name = "C", default_value_t = 8)]
    pub concurrency: usize,
    /// How long to run: seconds (fractions allowed) or with a unit (500ms, 10s, 2m). Default
    /// 10 s, or at most 600 s with --requests.
    #[arg(
        long,
        short = 'd',
        value_name = "DURATION",
        allow_hyphen_values = true,
        conflicts_with_all = ["requests", "step"]
    )]
    pub duration: Option<String>,
    /// Requests to send in total, then stop (closed loop).
    #[arg(long, short = 'n', value_name = "N", conflicts_with = "rate")]
    pub requests: Option<u64>,
    /// Open loop: requests per second on a schedule that a slow server cannot slow; latency
    /// counts from each request's intended send time. Several rates (1000,2000,4000) are
    /// steps, each held for --step.
    #[arg(
        long,
        value_name = "RATE[,RATE…]",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    pub rate: Vec<String>,
    /// How long each rate of --rate holds (e.g. 10s); the run lasts all the steps.
    #[arg(
        long,
        value_name = "DURATION",
        requires = "rate",
        allow_hyphen_values = true
    )]
    pub step: Option<String>,
    /// Path to request instead of the URL's; repeat to cycle through several.
    #[arg(long, value_name = "PATH")]
    pub path: Vec<String>,
    /// HTTP method of every request of the endpoint scenario (sent without a body).
    #[arg(long, value_name = "METHOD", default_value = "GET")]
    pub method: String,
    /// How long one request may take before it counts as timed out (seconds or with a unit).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10",
        allow_hyphen_values = true
    )]
    pub timeout: String,
    /// Customers of the shop scenario, registered before the clock starts.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub users: usize,
    /// Rooms of the chat scenario (each takes at most 20 messages/s from its sender).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub rooms: usize,
    /// Listening connections per room of the chat scenario.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub listeners: usize,
    /// The chat scenario's token: of a support or admin user (`POST /api/v1/sessions`).
    #[arg(long, value_name = "TOKEN", env = BENCH_TOKEN_VAR, hide_env_values = true)]
    pub token: Option<String>,
    /// Threads of the load generator (default: one per CPU).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Print the report as one JSON object (snake_case keys).
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print the report as Markdown tables.
    #[arg(long)]
    pub markdown: bool,
    /// A progress line on stderr every second: rate, errors, p50/p99 so far (the default
    /// when stderr is a terminal).
    #[arg(long)]
    pub progress: bool,
}

impl Cli {
    /// Loads the configuration: file, then `STRATA_*` variables of this process, then flags.
    ///
    /// # Errors
    /// Every bad key, each named (the caller exits with code 2).
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        let env = config_env(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        );
        load(
            self.config.as_deref(),
            env,
            &self.overrides(),
            &self.port_overrides(),
        )
        .map_err(|e| self.name_flags(e))
    }

    /// Names the flag of each problem whose value came from one (the configuration layer
    /// knows only the key).
    fn name_flags(&self, error: ConfigError) -> ConfigError {
        match error {
            ConfigError::Invalid(mut problems) => {
                for problem in &mut problems {
                    if problem.origin.as_deref() == Some(FROM_FLAG)
                        && let Some(flag) = self.flag_of(&problem.key)
                    {
                        problem.origin = Some(flag.to_owned());
                    }
                }
                ConfigError::Invalid(problems)
            }
            other => other,
        }
    }

    /// The flag that sets `key` in this command, if one does.
    fn flag_of(&self, key: &str) -> Option<&'static str> {
        let up = matches!(self.command, Command::Up(_));
        Some(match key {
            "log.level" => "--log-level",
            "log.format" => "--log-format",
            "api.instances" => "--api",
            "chat.instances" => "--chat",
            "store.data_dir" => "--data-dir",
            "store.database_url" => "--database-url",
            "cache.url" => "--cache",
            "bus.url" => "--bus",
            "gateway.upstream" => "--upstream",
            "gateway.listen" if up => "--port",
            "gateway.admin_listen" if up => "--admin-port",
            "gateway.admin_listen" => "--admin-listen",
            _ if key.ends_with(".listen") && up => PORT_OFFSET_FLAG,
            _ if key.ends_with(".listen") => "--listen",
            _ => return None,
        })
    }

    /// Flags that set a whole key.
    fn overrides(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        push(&mut out, "log.level", self.log_level.clone());
        push(&mut out, "log.format", self.log_format.clone());
        match &self.command {
            Command::Up(up) => {
                push(&mut out, "api.instances", up.api.map(|n| n.to_string()));
                push(&mut out, "chat.instances", up.chat.map(|n| n.to_string()));
                push(
                    &mut out,
                    "store.data_dir",
                    up.data_dir.as_ref().map(|d| d.display().to_string()),
                );
            }
            Command::Serve(serve) => {
                let listen_key = match serve.role {
                    Role::Gateway => "gateway.listen",
                    Role::Api => "api.listen",
                    Role::Chat => "chat.listen",
                    Role::Worker => "worker.listen",
                };
                push(&mut out, listen_key, serve.listen.clone());
                push(&mut out, "gateway.admin_listen", serve.admin_listen.clone());
                push(&mut out, "store.database_url", serve.database_url.clone());
                push(&mut out, "cache.url", serve.cache.clone());
                push(&mut out, "bus.url", serve.bus.clone());
                for upstream in &serve.upstream {
                    out.push(("gateway.upstream", upstream.clone()));
                }
            }
            Command::Backup(BackupArgs { store, .. })
            | Command::Restore(RestoreArgs { store, .. }) => {
                push(
                    &mut out,
                    "store.data_dir",
                    store.data_dir.as_ref().map(|d| d.display().to_string()),
                );
                push(&mut out, "store.database_url", store.database_url.clone());
            }
            Command::Bench(_)
            | Command::Chat(_)
            | Command::Events(_)
            | Command::Health(_)
            | Command::Lab(_) => {}
        }
        out
    }

    /// Flags that set only the port of an address key; the host comes from the layers below.
    fn port_overrides(&self) -> Ports {
        let mut out = Ports::default();
        if let Command::Up(up) = &self.command {
            out.offset = up.port_offset;
            out.exact.extend(up.port.map(|p| ("gateway.listen", p)));
            out.exact
                .extend(up.admin_port.map(|p| ("gateway.admin_listen", p)));
        }
        out
    }
}

/// The port flags of `strata up`: a shift of every port, then exact ports.
#[derive(Debug, Default)]
struct Ports {
    /// `--port-offset`: added to every listen port but port 0, or `auto` (port 0 everywhere).
    offset: Option<PortOffset>,
    /// `--port`, `--admin-port`: the port of one key.
    exact: Vec<(&'static str, u16)>,
}

/// The keys whose port `--port-offset` moves, and the flag that moves them.
const PORT_KEYS: [&str; 5] = [
    "gateway.listen",
    "gateway.admin_listen",
    "api.listen",
    "chat.listen",
    "worker.listen",
];
const PORT_OFFSET_FLAG: &str = "--port-offset";

fn push(out: &mut Vec<(&'static str, String)>, key: &'static str, value: Option<String>) {
    if let Some(value) = value {
        out.push((key, value));
    }
}

/// [`Config::load`] with port-only overrides: a first load finds the host each port goes
/// with, a second applies the complete address as an ordinary override.
fn load(
    file: Option<&Path>,
    env: Vec<(String, String)>,
    overrides: &[(&'static str, String)],
    ports: &Ports,
) -> Result<Config, ConfigError> {
    if ports.offset.is_none() && ports.exact.is_empty() {
        return Config::load(file, env, overrides);
    }
    let base = Config::load(file, env.iter().cloned(), overrides)?;
    let addr_of = |key: &str| match key {
        "gateway.admin_listen" => base.gateway.admin_listen,
        "api.listen" => base.api.listen,
        "chat.listen" => base.chat.listen,
        "worker.listen" => base.worker.listen,
        _ => base.gateway.listen,
    };
    let mut all = overrides.to_vec();
    let mut problems = Vec::new();
    if ports.offset == Some(PortOffset::Auto) {
        for key in PORT_KEYS {
            all.push((key, SocketAddr::new(addr_of(key).ip(), 0).to_string()));
        }
    }
    let by = match ports.offset {
        Some(PortOffset::By(offset)) if offset > 0 => Some(offset),
        _ => None,
    };
    if let Some(offset) = by {
        for key in PORT_KEYS {
            let addr = addr_of(key);
            if addr.port() == 0 {
                continue;
            }
            match addr.port().checked_add(offset) {
                Some(port) => all.push((key, SocketAddr::new(addr.ip(), port).to_string())),
                None => problems.push(
                    Problem::new(
                        key,
                        &format!("port {} + {offset} is above 65535", addr.port()),
                    )
                    .at(PORT_OFFSET_FLAG),
                ),
            }
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    for &(key, port) in &ports.exact {
        all.push((key, SocketAddr::new(addr_of(key).ip(), port).to_string()));
    }
    Config::load(file, env, &all)
}

/// The environment without the variables that stand for flags (`STRATA_CONFIG`,
/// `STRATA_CHAT_TOKEN`, `STRATA_EVENTS_TOKEN`): the rest of `STRATA_*` is configuration, where
/// an unknown name is an error.
fn config_env(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    vars.filter(|(k, _)| !FLAG_VARS.contains(&k.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("strata").chain(args.iter().copied())).unwrap()
    }

    fn load_args(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let cli = parse(args);
        let env = config_env(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        load(
            cli.config.as_deref(),
            env,
            &cli.overrides(),
            &cli.port_overrides(),
        )
        .map_err(|e| cli.name_flags(e))
    }

    #[test]
    fn token_variables_of_flags_are_not_configuration() {
        let env = [
            ("STRATA_CHAT_TOKEN", "a.b.c"),
            ("STRATA_EVENTS_TOKEN", "secret"),
        ];
        assert!(load_args(&["events", "stats"], &env).is_ok());
        let err = load_args(&["events", "stats"], &[("STRATA_EVENTS_TOKENS", "x")]).unwrap_err();
        assert!(err.to_string().contains("STRATA_EVENTS_TOKENS"), "{err}");
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn up_flags_override_environment_and_ports_keep_their_host() {
        let env = [
            ("STRATA_API_INSTANCES", "5"),
            ("STRATA_GATEWAY_LISTEN", "0.0.0.0:1"),
        ];
        let config = load_args(
            &[
                "up",
                "--api",
                "2",
                "--port",
                "8088",
                "--admin-port",
                "9099",
                "--data-dir",
                "/tmp/d",
            ],
            &env,
        )
        .unwrap();
        assert_eq!(config.api.instances, 2);
        assert_eq!(config.gateway.listen.to_string(), "0.0.0.0:8088");
        assert_eq!(config.gateway.admin_listen.to_string(), "127.0.0.1:9099");
        assert_eq!(config.store.data_dir, PathBuf::from("/tmp/d"));
    }

    #[test]
    fn serve_flags_name_the_role_keys() {
        let config = load_args(
            &[
                "serve",
                "api",
                "--listen",
                "127.0.0.1:7001",
                "--database-url",
                "postgres://u@h/db",
                "--cache",
                "redis://h:6379",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(config.api.listen.port(), 7001);
        assert_eq!(config.store.database_url, "postgres://u@h/db");
        assert_eq!(config.cache.url, "redis://h:6379");
        let config = load_args(
            &[
                "serve",
                "gateway",
                "--upstream",
                "api=http://a:1,http://b:2",
                "--upstream",
                "chat=http://c:3",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(config.gateway.pools.len(), 2);
        let err = load_args(&["serve", "worker", "--listen", "nowhere"], &[]).unwrap_err();
        assert!(err.to_string().contains("worker.listen"), "{err}");
    }

    #[test]
    fn backup_and_restore_flags_name_the_store_keys() {
        let config = load_args(&["backup", "--data-dir", "/tmp/d", "b.db"], &[]).unwrap();
        assert_eq!(config.store.data_dir, PathBuf::from("/tmp/d"));
        assert_eq!(config.store.effective_url(), "sqlite:///tmp/d/strata.db");
        let config = load_args(
            &["restore", "--database-url", "sqlite:///srv/s.db", "b.db"],
            &[("STRATA_STORE_DATABASE_URL", "sqlite:///elsewhere.db")],
        )
        .unwrap();
        assert_eq!(config.store.database_url, "sqlite:///srv/s.db");
        let cli = parse(&["backup", "--force", "b.db"]);
        assert!(matches!(
            cli.command,
            Command::Backup(BackupArgs { force: true, .. })
        ));
    }

    #[test]
    fn bad_environment_is_reported_by_key_even_with_port_flags() {
        let err =
            load_args(&["up", "--port", "1"], &[("STRATA_API_INSTANCES", "abc")]).unwrap_err();
        assert!(err.to_string().contains("api.instances"), "{err}");
    }

    #[test]
    fn port_offset_moves_every_port_and_exact_ports_still_win() {
        let config = load_args(&["up", "--port-offset", "1000"], &[]).unwrap();
        assert_eq!(config.gateway.listen.port(), 9080);
        assert_eq!(config.gateway.admin_listen.port(), 10090);
        assert_eq!(config.api.instance_addr(1).port(), 9102);
        assert_eq!(config.chat.listen.port(), 9201);
        assert_eq!(config.worker.listen.port(), 9301);
        let config = load_args(
            &["up", "--port-offset", "10", "--port", "7000"],
            &[("STRATA_API_LISTEN", "127.0.0.1:0")],
        )
        .unwrap();
        assert_eq!(config.gateway.listen.port(), 7000);
        assert_eq!(config.gateway.admin_listen.port(), 9100);
        assert_eq!(config.api.listen.port(), 0, "the OS still picks");
        let config = load_args(
            &["up", "--port-offset", "auto", "--admin-port", "9999"],
            &[],
        )
        .unwrap();
        assert_eq!(config.gateway.listen.port(), 0);
        assert_eq!(config.gateway.admin_listen.port(), 9999);
        assert_eq!(
            (config.api.listen.port(), config.chat.listen.port()),
            (0, 0)
        );
        assert_eq!(config.worker.listen.port(), 0);
        assert!(Cli::try_parse_from(["strata", "up", "--port-offset", "some"]).is_err());
        let err = load_args(&["up", "--port-offset", "60000"], &[]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("api.listen") && text.contains("--port-offset"),
            "{text}"
        );
    }

    #[test]
    fn a_bad_flag_value_names_its_flag() {
        let err = load_args(&["up", "--log-level", "=bad=filter="], &[]).unwrap_err();
        assert!(err.to_string().contains("(from --log-level)"), "{err}");
        let err = load_args(&["serve", "api", "--listen", "nowhere"], &[]).unwrap_err();
        assert!(err.to_string().contains("(from --listen)"), "{err}");
    }

    #[test]
    fn bench_duration_and_requests_exclude_each_other() {
        let result = Cli::try_parse_from([
            "strata",
            "bench",
            "--url",
            "http://x:1",
            "-d",
            "1",
            "-n",
            "5",
        ]);
        assert!(result.is_err());
    }
}
