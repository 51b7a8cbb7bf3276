//! Tests of the key machinery, through a composition of core's own sections and one section
//! with a key of every kind.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::*;

crate::config_section! {
    /// A composition of the sections declared here, as a binary composes its own.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Root {
        /// Logs.
        section log: LogConfig = LogConfig::default(),
        /// The store.
        section store: StoreConfig = StoreConfig::default(),
        /// The cache.
        section cache: CacheConfig = CacheConfig::default(),
        /// The bus.
        section bus: BusConfig = BusConfig::default(),
        /// A live one, for the restart list.
        section extra: Extra = Extra::default(),
    }
}

crate::config_section! {
    /// Keys of every kind.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Extra {
        /// Applied by a reload.
        live weight: u32 = 1; check |w| *w >= 1, "must be at least 1",
        /// A token.
        restart token: Secret = Secret::default() => parse::trimmed,
        /// Only in a file.
        file names: Vec<String> = Vec::new(),
    }
    setters {
        /// Sets `names` from a comma-separated list.
        live name_list => Extra::set_names,
    }
}

impl Extra {
    fn set_names(&mut self, value: &str) -> Result<(), String> {
        self.names = value.split(',').map(str::to_owned).collect();
        Ok(())
    }
}

fn load(env: &[(&str, &str)], overrides: &[(&str, String)]) -> Result<Root, ConfigError> {
    Root::load(None, env.iter().copied(), overrides)
}

fn problems(err: ConfigError) -> Vec<Problem> {
    let ConfigError::Invalid(p) = err;
    p
}

fn temp_file(text: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("strata-config-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("strata.toml");
    std::fs::write(&file, text).unwrap();
    (dir, file)
}

#[test]
fn defaults_are_valid() {
    let config = load(&[], &[]).unwrap();
    assert!(
        config
            .store
            .effective_url()
            .ends_with("strata-data/strata.db")
    );
    assert_eq!(config.log.format, LogFormat::Auto);
    assert!(
        config.log.access_sample.abs() < f64::EPSILON,
        "no access log by default"
    );
}

#[test]
fn layers_override_each_other_and_setters_and_parsers_apply() {
    let (dir, file) =
        temp_file("[cache]\nttl_secs = 9\nprefix = \"a\"\n[bus]\nurl = \"nats://f\"\n");
    let env = [
        ("STRATA_CACHE_PREFIX", "b"),
        ("STRATA_bus_url", "nats://e"),
        ("STRATA_EXTRA_TOKEN", "  0123456789abcdef  "),
        ("STRATA_EXTRA_NAME_LIST", "x,y"),
        ("HOME", "/x"),
    ];
    let config = Root::load(Some(&file), env, &[("bus.url", "nats://g".into())]).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(config.cache.ttl_secs, 9, "file beats default");
    assert_eq!(config.cache.prefix, "b", "env beats file");
    assert_eq!(config.bus.url, "nats://g", "flag beats env");
    assert_eq!(config.extra.token.expose(), "0123456789abcdef");
    assert_eq!(config.extra.names, ["x", "y"]);
    assert_eq!(config.cache.url, "memory", "untouched keys keep defaults");
}

#[test]
fn all_problems_are_reported_with_their_keys() {
    let env = [
        ("STRATA_NOPE", "1"),
        ("STRATA_CACHE_URL", "mem"),
        ("STRATA_STORE_MAX_CONNECTIONS", "many"),
    ];
    let found = problems(
        load(
            &env,
            &[
                ("bus.url", "kafka://x".into()),
                ("bus.colour", "blue".into()),
                ("log.format", "xml".into()),
                ("extra.weight", "0".into()),
            ],
        )
        .unwrap_err(),
    );
    let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "STRATA_NOPE",
        "cache.url",
        "store.max_connections",
        "bus.url",
        "bus.colour",
        "log.format",
    ] {
        assert!(keys.contains(&key), "{key} not in {keys:?}");
    }
    let message = |key: &str| &found.iter().find(|p| p.key == key).unwrap().message;
    assert_eq!(message("extra.weight"), "must be at least 1");
    assert_eq!(message("STRATA_NOPE"), "unknown configuration variable");
    assert_eq!(message("bus.colour"), "unknown configuration key");
    assert_eq!(
        message("log.format"),
        "`xml`: expected `auto`, `json` or `pretty`, got `xml`"
    );
}

#[test]
fn a_read_replica_needs_postgres_on_both_sides() {
    let primary = ("STRATA_STORE_DATABASE_URL", "postgres://app@primary/shop");
    let config = load(
        &[
            primary,
            ("STRATA_STORE_READ_URL", "postgres://app@replica/shop"),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(config.store.read_url, "postgres://app@replica/shop");
    assert!(load(&[primary], &[]).unwrap().store.read_url.is_empty());

    let not_postgres = problems(
        load(
            &[primary, ("STRATA_STORE_READ_URL", "sqlite://replica.db")],
            &[],
        )
        .unwrap_err(),
    );
    assert_eq!(not_postgres.len(), 1, "{not_postgres:?}");
    assert_eq!(not_postgres[0].key, "store.read_url");
    assert!(
        not_postgres[0].message.contains("postgres://"),
        "{not_postgres:?}"
    );

    // On the embedded store (the default, or a sqlite:// URL), reported with the other
    // problems at once.
    for database_url in ["", "sqlite://strata-data/strata.db"] {
        let found = problems(
            load(
                &[
                    ("STRATA_STORE_DATABASE_URL", database_url),
                    ("STRATA_STORE_READ_URL", "postgres://app@replica/shop"),
                    ("STRATA_CACHE_URL", "mem"),
                ],
                &[],
            )
            .unwrap_err(),
        );
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["store.read_url", "cache.url"], "{found:?}");
        assert!(
            found[0].message.contains("PostgreSQL database_url"),
            "{found:?}"
        );
    }
}

#[test]
fn file_errors_name_the_key() {
    let (dir, file) = temp_file("[cache]\nttl_secs = \"long\"\n");
    let err = Root::load(Some(&file), Vec::<(String, String)>::new(), &[]).unwrap_err();
    std::fs::write(&file, "[cache]\nsize = 3\n").unwrap();
    let unknown = Root::load(Some(&file), Vec::<(String, String)>::new(), &[]).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(err.to_string().contains("cache.ttl_secs"), "{err}");
    assert!(unknown.to_string().contains("size"), "{unknown}");
    // A missing file is one problem among the others, named by its path.
    let missing = Root::load(
        Some(Path::new("/nonexistent/strata.toml")),
        [("STRATA_CACHE_TTL_SECS", "soon")],
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(missing.contains("2 problems"), "{missing}");
    assert!(
        missing.contains("/nonexistent/strata.toml: cannot read the configuration file"),
        "{missing}"
    );
    assert!(missing.contains("cache.ttl_secs"), "{missing}");
}

#[test]
fn every_problem_of_file_environment_and_flags_is_reported_with_its_origin() {
    let (dir, file) = temp_file(
        "[cache]\nttl_secs = \"long\"\nsize = 3\n\n[bus]\ncolour = \"blue\"\nurl = \"memory\"\n[nope]\nx = 1\n",
    );
    let err = Root::load(
        Some(&file),
        [("STRATA_STORE_MAX_CONNECTIONS", "many")],
        &[("extra.weight", "0".into())],
    )
    .unwrap_err();
    let shown = file.display().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    let found = problems(err);
    let by_key = |key: &str| {
        found
            .iter()
            .find(|p| p.key == key)
            .unwrap_or_else(|| panic!("no {key} in {found:?}"))
    };
    // A table header's key is placed after its `[`.
    for (key, line, column) in [("cache.size", 3, 1), ("bus.colour", 6, 1), ("nope", 8, 2)] {
        let problem = by_key(key);
        assert_eq!(problem.message, "unknown configuration key", "{problem:?}");
        assert_eq!(
            problem.origin.as_deref(),
            Some(format!("{shown}:{line}:{column}").as_str()),
            "{problem:?}"
        );
    }
    let ttl = by_key("cache.ttl_secs");
    assert_eq!(ttl.origin.as_deref(), Some(format!("{shown}:2:1").as_str()));
    assert_eq!(
        by_key("store.max_connections").origin.as_deref(),
        Some("STRATA_STORE_MAX_CONNECTIONS")
    );
    assert_eq!(by_key("extra.weight").origin.as_deref(), Some(FROM_FLAG));
    assert_eq!(found.len(), 6, "{found:?}");
    let text = ConfigError::Invalid(found.clone()).to_string();
    assert!(
        text.starts_with("invalid configuration (6 problems):"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "cache.size: unknown configuration key (from {shown}:3:1)"
        )),
        "{text}"
    );
}

#[test]
fn a_toml_syntax_error_has_its_line_and_column_and_the_other_layers_still_report() {
    let (dir, file) = temp_file("[cache]\nttl_secs = 9\nprefix = \"unterminated\n");
    let err = Root::load(Some(&file), [("STRATA_CACHE_URL", "mem")], &[]).unwrap_err();
    let shown = file.display().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    let found = problems(err);
    assert!(
        found[0].key.starts_with(&format!("{shown}:3:")),
        "{found:?}"
    );
    assert!(found[0].message.starts_with("invalid TOML"), "{found:?}");
    assert!(found.iter().any(|p| p.key == "cache.url"), "{found:?}");
}

#[test]
fn every_key_has_its_own_environment_variable() {
    let keys = keys(&Root::default().items());
    assert!(keys.contains(&"extra.name_list".to_owned()), "{keys:?}");
    assert!(
        !keys.contains(&"extra.names".to_owned()),
        "file-only: {keys:?}"
    );
    let mut seen = std::collections::HashSet::new();
    for key in &keys {
        assert!(
            seen.insert(env_var(key)),
            "{key}: its variable names two keys"
        );
        let mut problems = Vec::new();
        set(&mut Root::default(), key, "\u{0}", &mut problems);
        assert!(
            problems
                .iter()
                .all(|p| p.message != "unknown configuration key"),
            "{key}: {problems:?}"
        );
    }
}

#[test]
fn restart_changes_name_the_changed_restart_keys_only() {
    let old = Root::default();
    let mut new = old.clone();
    new.extra.weight = 5;
    new.extra.names = vec!["a".into()];
    assert!(changes(&old, &new).is_empty());
    new.extra.token = Secret::new("t");
    new.cache.ttl_secs = 1;
    assert_eq!(changes(&old, &new), ["cache.ttl_secs", "extra.token"]);
}

fn changes(old: &Root, new: &Root) -> Vec<String> {
    let mut out = Vec::new();
    old.restart_changes(new, "", &mut out);
    out
}

#[test]
fn documents_follow_the_declarations() {
    let items = Root::default().items();
    let toml = example_toml(&items);
    let parsed: Root = toml::from_str(&toml).unwrap();
    assert_eq!(parsed, Root::default(), "{toml}");
    assert!(
        toml.contains("\n[extra]\n# Applied by a reload.\nweight = 1\n"),
        "{toml}"
    );
    assert!(
        toml.contains("# (STRATA_EXTRA_NAME_LIST or a flag only.)"),
        "{toml}"
    );
    let table = markdown_table(&items);
    assert!(table.contains("| `cache.url` | `memory` | restart | `memory` (default, in process) or `redis://host:port`. |"), "{table}");
    assert!(
        table.contains("| `extra.weight` | 1 | applied | Applied by a reload. |"),
        "{table}"
    );
    assert!(
        table.contains("| `store.database_url` | empty | restart |"),
        "{table}"
    );
    assert!(!table.contains("extra.names"), "{table}");
}

#[test]
fn secrets_never_print() {
    let secret = Secret::new("hunter2hunter2");
    assert_eq!(format!("{secret:?} {secret}"), "Secret(***) ***");
    assert_eq!(format!("{:?}", Secret::default()), "Secret(empty)");
}
