//! Loading: built-in defaults, then a TOML file, then `STRATA_*` variables, then flags; every
//! problem of every layer is collected, so a broken deployment is fixed in one round trip.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ENV_PREFIX;
use super::problem::{ConfigError, Problem};
use super::section::{Item, ItemKind, Section, join};

/// Where a flag's value came from, until the binary names the flag (it knows which flag sets
/// which key; this layer sees only keys).
pub const FROM_FLAG: &str = "a flag";

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
    let mut problems = Vec::new();
    // Each key given by a layer, with where: a rule between keys names the value's origin too.
    let mut origins = BTreeMap::new();
    let mut config = match file {
        Some(path) => from_file(path, &mut problems, &mut origins),
        None => C::default(),
    };
    let env: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.as_ref().starts_with(ENV_PREFIX))
        .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
        .collect();
    let keys = keys(&config.items());
    for (var, value) in &env {
        match env_key(&keys, var) {
            Some(key) => {
                set(&mut config, key, value, &mut problems);
                origins.insert(key.to_owned(), var.clone());
            }
            None => problems.push(Problem::new(var, "unknown configuration variable")),
        }
    }
    for (key, value) in overrides {
        set(&mut config, key, value, &mut problems);
        origins.insert((*key).to_owned(), FROM_FLAG.to_owned());
    }
    config.validate("", &mut problems);
    for problem in &mut problems {
        if problem.origin.is_none() {
            problem.origin = origins.get(&problem.key).cloned();
        }
    }
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

/// Reads a TOML file over the defaults. Every problem of the file is added to `problems`: a
/// file that cannot be read (the other layers are still checked, so their problems come
/// with it), all syntax errors (each at its line and column; the file's values are then left
/// out), all unknown keys and all values of the wrong type (each at its key's line), and the
/// values that are right are kept. `origins` gets the place of every key the file gives.
fn from_file<C: Section + Serialize + DeserializeOwned>(
    path: &Path,
    problems: &mut Vec<Problem>,
    origins: &mut BTreeMap<String, String>,
) -> C {
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            problems.push(Problem::new(
                &shown,
                &format!("cannot read the configuration file: {e}"),
            ));
            return C::default();
        }
    };
    let at = |offset: usize| {
        let (line, column) = line_column(&text, offset);
        format!("{shown}:{line}:{column}")
    };
    let (document, errors) = toml::de::DeTable::parse_recoverable(&text);
    if !errors.is_empty() {
        for error in errors {
            let place = error.span().map_or_else(|| shown.clone(), |s| at(s.start));
            problems.push(Problem::new(
                &place,
                &format!("invalid TOML: {}", error.message().trim()),
            ));
        }
        return C::default();
    }
    let mut places = BTreeMap::new();
    spans("", document.get_ref(), &mut |key, offset| {
        places.insert(key, at(offset));
    });
    let mut file: toml::Table = match toml::from_str(&text) {
        Ok(table) => table,
        Err(e) => {
            let place = e.span().map_or_else(|| shown.clone(), |s| at(s.start));
            problems.push(Problem::new(
                &place,
                &format!("invalid TOML: {}", e.message().trim()),
            ));
            return C::default();
        }
    };
    let place_of = |key: &str| {
        // A key inside an array of tables (`a.b[0].c`) is placed at its table, when known.
        places
            .get(key)
            .or_else(|| key.split_once('[').and_then(|(outer, _)| places.get(outer)))
            .cloned()
            .unwrap_or_else(|| shown.clone())
    };
    let mut unknown = Vec::new();
    remove_unknown("", &C::default().items(), &mut file, &mut unknown);
    for key in unknown {
        let place = place_of(&key);
        problems.push(Problem::new(&key, "unknown configuration key").at(&place));
    }
    for key in places.keys() {
        origins.insert(key.clone(), places[key].clone());
    }
    // Merged over the defaults rather than deserialized alone: a partly written section
    // (`[gateway.chat]` with one key) keeps the defaults of *its* place, which `serde(default)`
    // would take from the section type instead (the api pool's, for the chat pool).
    let defaults = match toml::Value::try_from(C::default()) {
        Ok(toml::Value::Table(table)) => table,
        _ => toml::Table::new(),
    };
    // serde stops at the first bad value: each one found is reported and taken out (its key
    // keeps its default), until the rest deserializes. Bounded by the file's values.
    loop {
        let mut merged = defaults.clone();
        merge(&mut merged, file.clone());
        match serde_path_to_error::deserialize(toml::Value::Table(merged)) {
            Ok(config) => return config,
            Err(e) => {
                let key = e.path().to_string();
                let place = place_of(&key);
                problems.push(Problem::new(&key, &e.inner().to_string()).at(&place));
                if !remove_path(&mut file, &key) {
                    return C::default();
                }
            }
        }
    }
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, last)| last)
        .chars()
        .count()
        + 1;
    (line, column)
}

/// Calls `found(dotted key, byte offset of the key)` for every key of a parsed document; keys
/// in arrays of tables are named `outer[i].key`, as serde paths name them.
fn spans(prefix: &str, table: &toml::de::DeTable<'_>, found: &mut impl FnMut(String, usize)) {
    for (key, value) in table {
        let name = join(prefix, key.get_ref());
        found(name.clone(), key.span().start);
        match value.get_ref() {
            toml::de::DeValue::Table(inner) => spans(&name, inner, found),
            toml::de::DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::de::DeValue::Table(inner) = item.get_ref() {
                        spans(&format!("{name}[{i}]"), inner, found);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Takes out of `table` (the file's, below `prefix`) every key the key table `items` does not
/// have, and appends its dotted name to `unknown`. File-only values (lists of tables) are left
/// to their type, which names its own unknown fields.
fn remove_unknown(
    prefix: &str,
    items: &[Item],
    table: &mut toml::Table,
    unknown: &mut Vec<String>,
) {
    let names: Vec<String> = table.keys().cloned().collect();
    for name in names {
        let item = items.iter().find(|item| item.name == name);
        match (item.map(|item| &item.kind), table.get_mut(&name)) {
            (Some(ItemKind::Section(inner)), Some(toml::Value::Table(sub))) => {
                remove_unknown(&join(prefix, &name), inner, sub, unknown);
            }
            (Some(ItemKind::Key { .. } | ItemKind::File { .. } | ItemKind::Section(_)), _) => {}
            (Some(ItemKind::Setter { .. }) | None, _) => {
                table.remove(&name);
                unknown.push(join(prefix, &name));
            }
        }
    }
}

/// Removes the value at a serde path (`a.b.c`, `a.b[0].c`) from `table`: the key itself, or
/// for a path into an array, the whole array. False when nothing was there to remove.
fn remove_path(table: &mut toml::Table, path: &str) -> bool {
    let path = path.split_once('[').map_or(path, |(outer, _)| outer);
    let mut parts = path.split('.').peekable();
    let mut current = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            return current.remove(part).is_some();
        }
        if !matches!(current.get(part), Some(toml::Value::Table(_))) {
            return current.remove(part).is_some();
        }
        match current.get_mut(part) {
            Some(toml::Value::Table(next)) => current = next,
            _ => return false,
        }
    }
    false
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
