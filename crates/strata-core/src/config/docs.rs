//! Documents rendered from a key table: the example `strata.toml` and the README's table of
//! keys. The repository's copies are checked against them by a test of the composed
//! configuration, so the documents cannot drift from the declarations.

use std::fmt::Write as _;

use super::load::env_var;
use super::section::{Item, ItemKind, Reload, join};

/// The top of the example file.
const TOML_HEADER: &str = "\
# strata.toml: an example configuration with every key at its default.
#
# Precedence: built-in defaults < this file (--config FILE) < STRATA_* environment variables
# < command-line flags. A variable is named STRATA_<SECTION>_<KEY>, e.g.
# STRATA_STORE_DATABASE_URL or STRATA_API_INSTANCES. Every invalid value and unknown key is
# reported at once, with its name and where it came from, and the process exits with code 2.
#
# Generated from the declarations of the keys (`config_section!`); a test checks it matches.
";

/// The example configuration file: every key at its value in `items` (the defaults), each
/// after its documentation.
pub fn example_toml(items: &[Item]) -> String {
    let mut out = String::from(TOML_HEADER);
    toml_table(&mut out, "", items);
    out
}

fn toml_table(out: &mut String, path: &str, items: &[Item]) {
    for item in items {
        match &item.kind {
            ItemKind::Key { value, .. } | ItemKind::File { value } => {
                comment(out, item.doc);
                match value {
                    Some(value) => {
                        let _ = writeln!(out, "{} = {value}", item.name);
                    }
                    // No value by default: named, so the key can be found and set.
                    None => {
                        let _ = writeln!(out, "# {} =", item.name);
                    }
                }
            }
            ItemKind::Setter { .. } => {
                comment(out, item.doc);
                let _ = writeln!(
                    out,
                    "# ({} or a flag only.)",
                    env_var(&join(path, item.name))
                );
            }
            ItemKind::Section(_) => {}
        }
    }
    for item in items {
        if let ItemKind::Section(inner) = &item.kind {
            let path = join(path, item.name);
            out.push('\n');
            comment(out, item.doc);
            let _ = writeln!(out, "[{path}]");
            toml_table(out, &path, inner);
        }
    }
}

fn comment(out: &mut String, doc: &str) {
    for line in doc.lines() {
        let _ = writeln!(out, "#{}", line.trim_end());
    }
}

/// The README's table of keys: one row per key, with its default (its value in `items`), what
/// a reload does with it, and the first sentence of its documentation.
pub fn markdown_table(items: &[Item]) -> String {
    let mut out = String::from("| key | default | on reload | meaning |\n|---|---|---|---|\n");
    markdown_rows(&mut out, "", items);
    out
}

fn markdown_rows(out: &mut String, path: &str, items: &[Item]) {
    for item in items {
        let key = join(path, item.name);
        let (default, reload) = match &item.kind {
            ItemKind::Key { value, reload } => (shown(value.as_ref()), *reload),
            ItemKind::Setter { reload } => ("none".to_owned(), *reload),
            ItemKind::File { .. } => continue,
            ItemKind::Section(inner) => {
                markdown_rows(out, &key, inner);
                continue;
            }
        };
        let reload = match reload {
            Reload::Live => "applied",
            Reload::Restart => "restart",
        };
        let _ = writeln!(
            out,
            "| `{key}` | {default} | {reload} | {} |",
            summary(item.doc).replace('|', "\\|")
        );
    }
}

/// A default as the table shows it: text in code quotes, `empty` for empty text.
fn shown(value: Option<&toml::Value>) -> String {
    match value {
        Some(toml::Value::String(s)) if s.is_empty() => "empty".to_owned(),
        Some(toml::Value::String(s)) => format!("`{s}`"),
        Some(other) => other.to_string(),
        None => "none".to_owned(),
    }
}

/// The first sentence of a doc comment: up to the first `.` outside code quotes that ends the
/// text or is followed by a blank.
pub fn summary(doc: &str) -> String {
    let text = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut in_code = false;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '`' => in_code = !in_code,
            '.' if !in_code && chars.peek().is_none_or(|(_, next)| *next == ' ') => {
                return text[..=i].to_owned();
            }
            _ => {}
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_is_the_first_sentence_outside_code() {
        assert_eq!(
            summary(" `a.b` or `c`. Default `x.y`: more.\n"),
            "`a.b` or `c`."
        );
        assert_eq!(
            summary(" One line\n without a stop"),
            "One line without a stop"
        );
        assert_eq!(summary(" 1.25 times. Then"), "1.25 times.");
    }
}
