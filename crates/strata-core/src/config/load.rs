//! Loading: built-in defaults, then a TOML file, then `STRATA_*` variables, then flags; every
//! problem of every layer is collected, so a broken deployment is fixed in one round trip.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ENV_PREFIX;
use super::problem::{ConfigError, Problem};
use super::section::{Item, ItemKind, Section, join};

/// See [`Section::load`].
pub(super) fn load<C, E, K, V>(
    file: Option<&Path>,
    env: E,
    overrides: &[(&str, String)],
) -> Result<C, ConfigError>
where
    C: Section + Serialize + DeserializeOwned,
    E: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut config = match file {
        Some(path) => from_file(path)?,
        None => C::default(),
    };
    let mut problems = Vec::new();
    let env: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.as_ref().starts_with(ENV_PREFIX))
        .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
        .collect();
    let keys = keys(&config.items());
    for (var, value) in &env {
        match env_key(&keys, var) {
            Some(key) => set(&mut config, key, value, &mut problems),
            None => problems.push(Problem::new(var, "unknown configuration variable")),
        }
    }
    for (key, value) in overrides {
        set(&mut config, key, value, &mut problems);
    }
    config.validate("", &mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// Sets one key from its text form; a bad value or an unknown key becomes a problem.
pub fn set<C: Section>(config: &mut C, key: &str, value: &str, problems: &mut Vec<Problem>) {
    match config.set(key, value) {
        Some(Ok(())) => {}
        Some(Err(message)) => problems.push(Problem::new(key, &message)),
        None => problems.push(Problem::new(key, "unknown configuration key")),
    }
}

/// Reads a TOML file over the defaults.
fn from_file<C: Section + Serialize + DeserializeOwned>(path: &Path) -> Result<C, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let file: toml::Table = toml::from_str(&text).map_err(|e| {
        ConfigError::Invalid(vec![Problem::new(&path.display().to_string(), e.message())])
    })?;
    // Merged over the defaults rather than deserialized alone: a partly written section
    // (`[gateway.chat]` with one key) keeps the defaults of *its* place, which `serde(default)`
    // would take from the section type instead (the api pool's, for the chat pool).
    let mut merged = match toml::Value::try_from(C::default()) {
        Ok(toml::Value::Table(table)) => table,
        _ => toml::Table::new(),
    };
    merge(&mut merged, file);
    serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Invalid(vec![Problem::new(&key, &e.inner().to_string())])
    })
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

/// Every key a variable or a flag can set, dotted (`gateway.chat.health.interval_ms`), in
/// declaration order.
pub fn keys(items: &[Item]) -> Vec<String> {
    fn walk(prefix: &str, items: &[Item], out: &mut Vec<String>) {
        for item in items {
            match &item.kind {
                ItemKind::Key { .. } | ItemKind::Setter { .. } => {
                    out.push(join(prefix, item.name));
                }
                ItemKind::Section(items) => walk(&join(prefix, item.name), items, out),
                ItemKind::File { .. } => {}
            }
        }
    }
    let mut out = Vec::new();
    walk("", items, &mut out);
    out
}

/// The variable of `key`: `STRATA_` and the key with its dots written as `_`
/// (`gateway.chat.health.interval_ms` is `STRATA_GATEWAY_CHAT_HEALTH_INTERVAL_MS`).
pub fn env_var(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// The key `var` names, among `keys` (the part after `STRATA_` in any case). No two keys map
/// to the same variable (a test of each composed configuration checks it).
fn env_key<'k>(keys: &'k [String], var: &str) -> Option<&'k str> {
    let rest = var.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
    keys.iter()
        .find(|key| key.replace('.', "_") == rest)
        .map(String::as_str)
}
