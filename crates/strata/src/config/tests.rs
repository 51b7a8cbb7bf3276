//! Tests of the composed configuration: layering, problems reported together, every key's
//! variable, and the two documents generated from the declarations (`strata.toml`, README).

use std::path::Path;

use strata_core::ConfigError;
use strata_core::config::{
    Item, Problem, Section, env_var, example_toml, keys, markdown_table, set,
};

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

/// The repository's copy of a generated document; with `UPDATE_CONFIG_DOCS=1` in the
/// environment the test writes the expected text into it instead of failing.
fn check_document(path: &Path, actual: &str, expected: &str, whole: impl FnOnce(&str) -> String) {
    if actual == expected {
        return;
    }
    if std::env::var_os("UPDATE_CONFIG_DOCS").is_some() {
        std::fs::write(path, whole(expected)).unwrap();
        return;
    }
    panic!(
        "{} does not match the key declarations; run the test with UPDATE_CONFIG_DOCS=1 to \
         rewrite it. Expected:\n{expected}",
        path.display()
    );
}

fn repository(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(file)
}

fn items() -> Vec<Item> {
    Config::default().items()
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
fn strata_toml_is_generated_from_the_declarations_and_loads() {
    let path = repository("strata.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let expected = example_toml(&items());
    check_document(&path, &text, &expected, str::to_owned);
    let config = Config::load(Some(&path), Vec::<(String, String)>::new(), &[]).unwrap();
    assert_eq!(
        config,
        Config::default(),
        "the file holds every key at its default"
    );
}

/// Between these lines of README.md is the table of keys.
const README_START: &str = "<!-- keys: generated from the declarations; a test checks it -->\n";
const README_END: &str = "<!-- end of keys -->\n";

#[test]
fn readme_table_of_keys_is_generated_from_the_declarations() {
    let path = repository("README.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text
        .find(README_START)
        .expect("README marks its table of keys")
        + README_START.len();
    let end = start
        + text[start..]
            .find(README_END)
            .expect("README ends its table of keys");
    let expected = markdown_table(&items());
    check_document(&path, &text[start..end], &expected, |table| {
        format!("{}{table}{}", &text[..start], &text[end..])
    });
}

#[test]
fn worker_keys_load_from_env_and_bad_values_are_all_reported() {
    let config = load(
        &[
            ("STRATA_WORKER_MAX_DELIVERIES", "7"),
            ("STRATA_WORKER_PAYMENT_DECLINE_RATE", "0.25"),
            ("STRATA_WORKER_RELAY", "false"),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(config.worker.max_deliveries, 7);
    assert_eq!(config.worker.payment_decline_rate, 0.25);
    assert!(!config.worker.relay);
    let found = problems(
        load(
            &[
                ("STRATA_WORKER_PAYMENT_ERROR_RATE", "1.5"),
                ("STRATA_WORKER_CONCURRENCY", "0"),
                ("STRATA_WORKER_RETRY_MAX_MS", "1"),
                ("STRATA_WORKER_LISTEN", "0.0.0.0:8301"),
            ],
            &[("worker.nonsense", "1".into())],
        )
        .unwrap_err(),
    );
    let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "worker.payment_error_rate",
        "worker.concurrency",
        "worker.retry_max_ms",
        "worker.admin_token",
        "worker.nonsense",
    ] {
        assert!(keys.contains(&key), "{key} not in {keys:?}");
    }
}

#[test]
fn every_key_has_its_own_environment_variable() {
    let mut seen = std::collections::HashSet::new();
    let keys = keys(&items());
    for section in [
        "log", "store", "cache", "bus", "api", "chat", "worker", "auth", "admin",
    ] {
        assert!(
            keys.iter().any(|k| k.starts_with(&format!("{section}."))),
            "{section}"
        );
    }
    let gateway = format!("{}.listen", strata_gateway::config::SECTION);
    assert!(
        keys.contains(&gateway),
        "the gateway's section sits where it says"
    );
    for key in keys {
        let var = env_var(&key);
        assert!(seen.insert(var.clone()), "{var} names two keys");
        // And `set` knows the key (a bad value is a value problem, not an unknown key).
        let mut problems = Vec::new();
        set(&mut Config::default(), &key, "\u{0}", &mut problems);
        assert!(
            problems
                .iter()
                .all(|p| p.message != "unknown configuration key"),
            "{key}: {problems:?}"
        );
        let config = load(&[(var.as_str(), "\u{0}")], &[]);
        if let Err(ConfigError::Invalid(found)) = config {
            assert!(
                found
                    .iter()
                    .all(|p| p.message != "unknown configuration variable"),
                "{var}: {found:?}"
            );
        }
    }
}

#[test]
fn auth_and_admin_keys_load_from_the_environment_and_never_print_secrets() {
    let env = [
        ("STRATA_AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ("STRATA_AUTH_TOKEN_TTL_SECS", "60"),
        ("STRATA_ADMIN_EMAIL", "root@example.com"),
        ("STRATA_ADMIN_PASSWORD", "root password"),
    ];
    let config = load(&env, &[]).unwrap();
    assert_eq!(config.auth.jwt_secret.expose().len(), 32);
    assert_eq!(config.auth.token_ttl_secs, 60);
    assert_eq!(config.auth.key_id, "k1");
    assert_eq!(config.admin.email, "root@example.com");
    assert_eq!(config.admin.password.expose(), "root password");
    let printed = format!("{config:?}");
    assert!(!printed.contains("0123456789abcdef") && !printed.contains("root password"));
    assert!(printed.contains("Secret(***)"), "{printed}");

    let found = problems(
        load(
            &[
                ("STRATA_AUTH_JWT_SECRET", "short"),
                ("STRATA_ADMIN_EMAIL", "root@example.com"),
                ("STRATA_AUTH_TOKEN_TTL_SECS", "0"),
                ("STRATA_AUTH_KEY_ID", "a b"),
            ],
            &[],
        )
        .unwrap_err(),
    );
    let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "auth.jwt_secret",
        "admin.password",
        "auth.token_ttl_secs",
        "auth.key_id",
    ] {
        assert!(keys.contains(&key), "{key} not in {keys:?}");
    }
    assert!(
        !format!("{found:?}").contains("short"),
        "secrets are not echoed"
    );
}
