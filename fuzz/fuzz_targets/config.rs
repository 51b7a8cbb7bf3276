//! Configuration loading: a TOML file merged over the defaults, then `STRATA_*` variables,
//! then every check (`Section::load`), for the sections the libraries declare (`[log]`,
//! `[store]`, `[cache]`, `[bus]` and the gateway's, pools and instances included), composed as
//! the binary composes them.
//!
//! Input: the file's text, then optionally a NUL byte and `KEY=value` lines, each read as the
//! variable `STRATA_KEY`. Properties:
//! - a refused configuration names at least one problem;
//! - an accepted one, written back as TOML and loaded again, is the same configuration (what
//!   `strata config` prints can be used as a file);
//! - loading is deterministic.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use strata_core::ConfigError;
use strata_core::config::{BusConfig, CacheConfig, LogConfig, Section, StoreConfig};
use strata_core::config_section;
use strata_gateway::config::GatewayConfig;

config_section! {
    /// The library sections of strata's configuration.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Config {
        /// `[log]`.
        section log: LogConfig = LogConfig::default(),
        /// `[store]`.
        section store: StoreConfig = StoreConfig::default(),
        /// `[cache]`.
        section cache: CacheConfig = CacheConfig::default(),
        /// `[bus]`.
        section bus: BusConfig = BusConfig::default(),
        /// `[gateway]`.
        section gateway: GatewayConfig = GatewayConfig::default(),
    }
}

/// The file the text is written to (loading reads a path), one per fuzzing process.
fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("strata-fuzz-config-{}.toml", std::process::id()))
    })
}

fn load(text: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
    std::fs::write(path(), text).expect("cannot write the fuzzed file");
    Config::load(Some(path()), env.iter().cloned(), &[])
}

fuzz_target!(|input: &[u8]| {
    let (file, vars) = match input.iter().position(|&b| b == 0) {
        Some(nul) => (&input[..nul], &input[nul + 1..]),
        None => (input, &[][..]),
    };
    let (Ok(file), Ok(vars)) = (std::str::from_utf8(file), std::str::from_utf8(vars)) else {
        return;
    };
    let env: Vec<(String, String)> = vars
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (format!("STRATA_{k}"), v.to_owned()))
        .collect();

    match load(file, &env) {
        Ok(config) => {
            let written = toml::to_string(&config).expect("a configuration that cannot be written");
            match load(&written, &[]) {
                Ok(again) => assert_eq!(again, config, "written back as\n{written}"),
                Err(e) => panic!("written back as\n{written}\nand refused: {e}"),
            }
        }
        Err(ConfigError::Invalid(problems)) => {
            assert!(!problems.is_empty(), "refused without a reason");
            let again = match load(file, &env) {
                Err(ConfigError::Invalid(p)) => p,
                other => panic!("refused once, then {other:?}"),
            };
            assert_eq!(again, problems);
        }
        // `ConfigError` may grow variants; none but `Invalid` can come from text.
        Err(e) => panic!("{e}"),
    }
});
