//! Reads a migrated schema back from the database catalog, in one dialect-neutral shape, so the
//! equivalence test can check that the SQLite and PostgreSQL migrations describe the same
//! tables.
//!
//! What is compared, and how each dialect is read:
//!
//! | fact | SQLite | PostgreSQL |
//! |---|---|---|
//! | tables | `sqlite_master` | `information_schema.tables` |
//! | columns, type, nullability, default | `pragma_table_info` | `information_schema.columns` |
//! | primary key, unique column sets | `pragma_table_info.pk`, `pragma_index_list` (origin `u`) | `table_constraints` + `key_column_usage` |
//! | constraint names and kinds | `CONSTRAINT name …` parsed from the `CREATE TABLE` text | `pg_constraint` |
//! | check expressions | the same parse, normalized | `pg_get_constraintdef`, normalized |
//! | plain indexes | `pragma_index_list` (origin `c`) + `pragma_index_info` | `pg_index` without constraint-backed ones |
//! | foreign keys | `pragma_foreign_key_list` | `pg_constraint` (`contype = 'f'`) |
//! | full-text search | an FTS5 virtual table with `content = '<table>'` | a `tsvector` column |
//!
//! Full-text search structures are dialect-specific by nature, so they are compared only as
//! "this table has full-text search" ([`Table::full_text`]) and otherwise left out: on SQLite
//! the FTS5 virtual table and its shadow tables (`<name>_data`, `_idx`, `_content`,
//! `_docsize`, `_config`), on PostgreSQL the `tsvector` columns and the indexes over them. Both
//! dialects' search results are compared by a test of the api instead.
//!
//! Column types are normalized through a small mapping ([`sqlite_type`], [`postgres_type`]);
//! a type outside it keeps its dialect prefix (`pg:integer`) and so never matches the other
//! side: extend the mapping deliberately when a migration needs a new type.
//!
//! Rules this imposes on migrations: name every PRIMARY KEY, UNIQUE, CHECK and FOREIGN KEY
//! constraint explicitly in both dialects (SQLite has no name for an unnamed one; PostgreSQL
//! invents one), give identity columns `INTEGER … PRIMARY KEY AUTOINCREMENT` on SQLite and
//! `GENERATED … AS IDENTITY` on PostgreSQL, and write CHECK expressions the way PostgreSQL
//! prints them (it rewrites `BETWEEN` into two comparisons, for example).

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{PgPool, SqlitePool};

use crate::StoreError;
use crate::store::{Backend, Store};

/// The tables of one schema, excluding sqlx's and SQLite's own bookkeeping tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    /// Tables by name.
    pub tables: BTreeMap<String, Table>,
}

/// One table's columns and constraints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Columns by name.
    pub columns: BTreeMap<String, Column>,
    /// The primary key's columns, in key order.
    pub primary_key: Vec<String>,
    /// The column lists of UNIQUE constraints.
    pub unique: BTreeSet<Vec<String>>,
    /// Named constraints by name, with their kind (`primary key`, `unique`, `check`,
    /// `foreign key`).
    pub constraints: BTreeMap<String, String>,
    /// CHECK constraints by name, with their normalized expression.
    pub checks: BTreeMap<String, String>,
    /// Indexes that do not back a constraint, by name.
    pub indexes: BTreeMap<String, Index>,
    /// Foreign keys.
    pub foreign_keys: BTreeSet<ForeignKey>,
    /// Has full-text search (see the module docs).
    pub full_text: bool,
}

/// One column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// The normalized type: `int64`, `text`, `timestamptz`, `bool`, `float64`, `bytes`, or the
    /// raw type with a dialect prefix when it is outside the mapping.
    pub ty: String,
    /// Declared NOT NULL.
    pub not_null: bool,
    /// Has a DEFAULT expression (its text differs between dialects, so only presence counts).
    pub has_default: bool,
    /// Filled in by the database: an identity column, or SQLite's AUTOINCREMENT rowid alias.
    pub generated: bool,
}

/// An index that does not back a constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Index {
    /// Its columns, in index order.
    pub columns: Vec<String>,
    /// A UNIQUE index.
    pub unique: bool,
    /// A partial index (with a WHERE clause).
    pub partial: bool,
}

/// A foreign key from some columns of a table to columns of another.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignKey {
    /// Referencing columns, in order.
    pub columns: Vec<String>,
    /// Referenced table.
    pub ref_table: String,
    /// Referenced columns, in order.
    pub ref_columns: Vec<String>,
    /// `NO ACTION`, `RESTRICT`, `CASCADE`, `SET NULL` or `SET DEFAULT`.
    pub on_delete: String,
    /// As `on_delete`.
    pub on_update: String,
}

impl Schema {
    /// Reads the schema the store's connections see (on PostgreSQL: `current_schema()`).
    ///
    /// # Errors
    /// When the catalog cannot be queried.
    pub async fn introspect(store: &Store) -> Result<Schema, StoreError> {
        match &store.backend {
            Backend::Sqlite(pool) => introspect_sqlite(pool).await,
            Backend::Postgres(pool) => introspect_postgres(pool).await,
        }
    }

    /// Human-readable differences between two schemas, empty when they are equivalent.
    pub fn diff(&self, other: &Schema, left: &str, right: &str) -> Vec<String> {
        let mut out = Vec::new();
        for name in union(self.tables.keys(), other.tables.keys()) {
            match (self.tables.get(name), other.tables.get(name)) {
                (Some(a), Some(b)) => a.diff(b, name, left, right, &mut out),
                (Some(_), None) => out.push(format!("table {name}: only in {left}")),
                (None, _) => out.push(format!("table {name}: only in {right}")),
            }
        }
        out
    }
}

impl Table {
    fn diff(&self, other: &Table, table: &str, left: &str, right: &str, out: &mut Vec<String>) {
        for name in union(self.columns.keys(), other.columns.keys()) {
            match (self.columns.get(name), other.columns.get(name)) {
                (Some(a), Some(b)) if a != b => {
                    out.push(format!("{table}.{name}: {left} {a:?} vs {right} {b:?}"));
                }
                (Some(_), None) => out.push(format!("{table}.{name}: column only in {left}")),
                (None, Some(_)) => out.push(format!("{table}.{name}: column only in {right}")),
                _ => {}
            }
        }
        let mut compare = |what: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{table} {what}: {left} {a} vs {right} {b}"));
            }
        };
        compare(
            "primary key",
            format!("{:?}", self.primary_key),
            format!("{:?}", other.primary_key),
        );
        compare(
            "unique",
            format!("{:?}", self.unique),
            format!("{:?}", other.unique),
        );
        compare(
            "constraints",
            format!("{:?}", self.constraints),
            format!("{:?}", other.constraints),
        );
        compare(
            "checks",
            format!("{:?}", self.checks),
            format!("{:?}", other.checks),
        );
        compare(
            "indexes",
            format!("{:?}", self.indexes),
            format!("{:?}", other.indexes),
        );
        compare(
            "foreign keys",
            format!("{:?}", self.foreign_keys),
            format!("{:?}", other.foreign_keys),
        );
        compare(
            "full-text search",
            self.full_text.to_string(),
            other.full_text.to_string(),
        );
    }
}

fn union<'a>(
    a: impl Iterator<Item = &'a String>,
    b: impl Iterator<Item = &'a String>,
) -> BTreeSet<&'a String> {
    a.chain(b).collect()
}

/// The normalized name of a SQLite declared type.
pub fn sqlite_type(declared: &str) -> String {
    match declared.trim().to_ascii_uppercase().as_str() {
        // SQLite integers are 64-bit whatever the declared width.
        "INTEGER" | "BIGINT" => "int64".into(),
        "TEXT" => "text".into(),
        // Holds UTC RFC 3339 text, decoded as time::OffsetDateTime.
        "DATETIME" => "timestamptz".into(),
        "BOOLEAN" => "bool".into(),
        "REAL" | "DOUBLE" => "float64".into(),
        "BLOB" => "bytes".into(),
        _ => format!("sqlite:{declared}"),
    }
}

/// The normalized name of a PostgreSQL `information_schema.columns.data_type`.
///
/// `integer` and `smallint` are left unmapped on purpose: the Rust models use `i64`, which
/// decodes from `bigint` only, and SQLite's INTEGER is 64-bit.
pub fn postgres_type(data_type: &str) -> String {
    match data_type {
        "bigint" => "int64".into(),
        "text" => "text".into(),
        "timestamp with time zone" => "timestamptz".into(),
        "boolean" => "bool".into(),
        "double precision" => "float64".into(),
        "bytea" => "bytes".into(),
        _ => format!("pg:{data_type}"),
    }
}

/// Normalizes a CHECK expression so both dialects' spellings compare equal: lowercase, no
/// whitespace, parentheses or `::type` casts (PostgreSQL adds them), `!=` as `<>`, and
/// PostgreSQL's `= ANY (ARRAY[…])` back into `IN (…)`.
pub fn normalize_check(expr: &str) -> String {
    let lowered = expr.to_lowercase();
    let mut out = String::with_capacity(lowered.len());
    let mut chars = lowered.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\'' {
                in_string = false;
            }
            continue;
        }
        match c {
            '\'' => {
                in_string = true;
                out.push(c);
            }
            ':' if chars.peek() == Some(&':') => {
                // Skip `::typename` (a cast PostgreSQL inserts), including `character varying`.
                chars.next();
                while chars
                    .peek()
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_')
                {
                    chars.next();
                }
            }
            c if c.is_whitespace() || c == '(' || c == ')' => {}
            c => out.push(c),
        }
    }
    out.replace("!=", "<>")
        .replace("=anyarray[", "in")
        .replace(']', "")
}

async fn introspect_sqlite(pool: &SqlitePool) -> Result<Schema, StoreError> {
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, sql FROM sqlite_master \
         WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
           AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    // FTS5 virtual tables: left out with their shadow tables, noted on their content table.
    let mut full_text = BTreeSet::new();
    let mut skipped = BTreeSet::new();
    for (name, sql) in &tables {
        if sql.to_ascii_uppercase().starts_with("CREATE VIRTUAL TABLE") {
            skipped.insert(name.clone());
            for suffix in ["data", "idx", "content", "docsize", "config"] {
                skipped.insert(format!("{name}_{suffix}"));
            }
            if let Some(content) = fts5_content_table(sql) {
                full_text.insert(content);
            }
        }
    }
    let mut schema = Schema::default();
    for (name, sql) in tables {
        if skipped.contains(&name) {
            continue;
        }
        let mut table = Table {
            full_text: full_text.contains(&name),
            ..Table::default()
        };
        let autoincrement = sql.to_ascii_uppercase().contains("AUTOINCREMENT");

        let columns: Vec<(String, String, bool, bool, i64)> = sqlx::query_as(
            "SELECT name, type, \"notnull\", dflt_value IS NOT NULL, pk \
             FROM pragma_table_info($1) ORDER BY cid",
        )
        .bind(&name)
        .fetch_all(pool)
        .await?;
        let mut pk: Vec<(i64, String)> = columns
            .iter()
            .filter(|c| c.4 > 0)
            .map(|c| (c.4, c.0.clone()))
            .collect();
        pk.sort();
        table.primary_key = pk.into_iter().map(|(_, c)| c).collect();
        for (column, declared, not_null, has_default, _) in &columns {
            // Only a lone `INTEGER PRIMARY KEY` aliases the rowid and is filled in by SQLite.
            let rowid_alias =
                table.primary_key == [column.clone()] && declared.eq_ignore_ascii_case("INTEGER");
            table.columns.insert(
                column.clone(),
                Column {
                    ty: sqlite_type(declared),
                    not_null: *not_null,
                    has_default: *has_default,
                    generated: rowid_alias && autoincrement,
                },
            );
        }

        let indexes: Vec<(String, bool, String, bool)> = sqlx::query_as(
            "SELECT name, \"unique\", origin, partial FROM pragma_index_list($1) ORDER BY name",
        )
        .bind(&name)
        .fetch_all(pool)
        .await?;
        for (index, unique, origin, partial) in indexes {
            let columns: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                    .bind(&index)
                    .fetch_all(pool)
                    .await?;
            match origin.as_str() {
                "u" => {
                    table.unique.insert(columns);
                }
                "c" => {
                    table.indexes.insert(
                        index,
                        Index {
                            columns,
                            unique,
                            partial,
                        },
                    );
                }
                // "pk": the primary key, already read from pragma_table_info.
                _ => {}
            }
        }

        // `to` is NULL when a REFERENCES clause omits the column: it then shows as "" and fails
        // the comparison, which asks migrations to name referenced columns.
        let fk_rows: Vec<(i64, String, String, Option<String>, String, String)> = sqlx::query_as(
            "SELECT id, \"table\", \"from\", \"to\", on_delete, on_update \
             FROM pragma_foreign_key_list($1) ORDER BY id, seq",
        )
        .bind(&name)
        .fetch_all(pool)
        .await?;
        let mut fks: BTreeMap<i64, ForeignKey> = BTreeMap::new();
        for (id, ref_table, from, to, on_delete, on_update) in fk_rows {
            let fk = fks.entry(id).or_insert_with(|| ForeignKey {
                columns: Vec::new(),
                ref_table,
                ref_columns: Vec::new(),
                on_delete,
                on_update,
            });
            fk.columns.push(from);
            fk.ref_columns.push(to.unwrap_or_default());
        }
        table.foreign_keys = fks.into_values().collect();

        for constraint in parse_sqlite_constraints(&sql) {
            if let Some(expr) = constraint.check {
                table
                    .checks
                    .insert(constraint.name.clone(), normalize_check(&expr));
            }
            table.constraints.insert(constraint.name, constraint.kind);
        }
        schema.tables.insert(name, table);
    }
    Ok(schema)
}

/// The `content = 'table'` option of an FTS5 `CREATE VIRTUAL TABLE` statement.
fn fts5_content_table(sql: &str) -> Option<String> {
    let tokens = tokenize(sql);
    tokens.windows(3).find_map(|w| {
        (w[0].eq_ignore_ascii_case("content") && w[1] == "=")
            .then(|| w[2].trim_matches(['\'', '"']).to_owned())
    })
}

/// A `CONSTRAINT name …` clause found in SQLite's stored `CREATE TABLE` text.
#[derive(Debug, PartialEq, Eq)]
struct NamedConstraint {
    name: String,
    kind: String,
    /// The expression inside `CHECK (…)`.
    check: Option<String>,
}

/// Finds every `CONSTRAINT <name> <PRIMARY KEY | UNIQUE | CHECK (…) | FOREIGN KEY | REFERENCES>`
/// in a `CREATE TABLE` statement, skipping comments and string literals. SQLite keeps the text
/// as written (including later `ALTER TABLE … ADD COLUMN`s) and exposes names nowhere else.
fn parse_sqlite_constraints(sql: &str) -> Vec<NamedConstraint> {
    let tokens = tokenize(sql);
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i].eq_ignore_ascii_case("CONSTRAINT") && i + 2 < tokens.len() {
            let name = tokens[i + 1].trim_matches(['"', '`', '[', ']']).to_owned();
            let keyword = tokens[i + 2].to_ascii_uppercase();
            let kind = match keyword.as_str() {
                "PRIMARY" => Some("primary key"),
                "UNIQUE" => Some("unique"),
                "CHECK" => Some("check"),
                "FOREIGN" | "REFERENCES" => Some("foreign key"),
                _ => None,
            };
            if let Some(kind) = kind {
                let check = (kind == "check")
                    .then(|| balanced_parens(&tokens[i + 3..]))
                    .flatten();
                found.push(NamedConstraint {
                    name,
                    kind: kind.to_owned(),
                    check,
                });
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    found
}

/// The text between a leading `(` token and its matching `)`, tokens joined by spaces.
fn balanced_parens(tokens: &[String]) -> Option<String> {
    if tokens.first().map(String::as_str) != Some("(") {
        return None;
    }
    let mut depth = 0_usize;
    let mut inner = Vec::new();
    for token in tokens {
        match token.as_str() {
            "(" => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            ")" => {
                depth -= 1;
                if depth == 0 {
                    return Some(inner.join(" "));
                }
            }
            _ => {}
        }
        inner.push(token.clone());
    }
    None
}

/// Splits SQL into words, quoted strings, and single punctuation characters, dropping
/// whitespace and `--` / `/* */` comments.
fn tokenize(sql: &str) -> Vec<String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '\'' || c == '"' || c == '`' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += 1;
            }
            i += 1;
            tokens.push(chars[start..i.min(chars.len())].iter().collect());
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else {
            // Operators like `>=` become two tokens; normalize_check drops the spaces again.
            tokens.push(c.to_string());
            i += 1;
        }
    }
    tokens
}

async fn introspect_postgres(pool: &PgPool) -> Result<Schema, StoreError> {
    let mut schema = Schema::default();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
           AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await?;
    for name in tables {
        schema.tables.insert(name, Table::default());
    }

    let columns: Vec<(String, String, String, bool, bool, bool)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable = 'NO', \
                column_default IS NOT NULL AND column_default NOT LIKE 'nextval(%', \
                is_identity = 'YES' OR coalesce(column_default LIKE 'nextval(%', false) \
         FROM information_schema.columns WHERE table_schema = current_schema() \
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(pool)
    .await?;
    for (table, column, data_type, not_null, has_default, generated) in columns {
        if data_type == "tsvector" {
            // Full-text search: noted, not compared column by column (see the module docs).
            if let Some(t) = schema.tables.get_mut(&table) {
                t.full_text = true;
            }
            continue;
        }
        if let Some(t) = schema.tables.get_mut(&table) {
            t.columns.insert(
                column,
                Column {
                    ty: postgres_type(&data_type),
                    not_null,
                    has_default,
                    generated,
                },
            );
        }
    }

    let keys: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT tc.table_name::text, tc.constraint_name::text, kcu.column_name::text \
         FROM information_schema.table_constraints tc \
         JOIN information_schema.key_column_usage kcu \
           ON kcu.constraint_schema = tc.constraint_schema \
          AND kcu.constraint_name = tc.constraint_name \
          AND kcu.table_name = tc.table_name \
         WHERE tc.table_schema = current_schema() AND tc.constraint_type = $1 \
         ORDER BY tc.table_name, tc.constraint_name, kcu.ordinal_position",
    )
    .bind("UNIQUE")
    .fetch_all(pool)
    .await?;
    let mut unique: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (table, constraint, column) in keys {
        unique.entry((table, constraint)).or_default().push(column);
    }
    for ((table, _), columns) in unique {
        if let Some(t) = schema.tables.get_mut(&table) {
            t.unique.insert(columns);
        }
    }
    let pk: Vec<(String, String)> = sqlx::query_as(
        "SELECT tc.table_name::text, kcu.column_name::text \
         FROM information_schema.table_constraints tc \
         JOIN information_schema.key_column_usage kcu \
           ON kcu.constraint_schema = tc.constraint_schema \
          AND kcu.constraint_name = tc.constraint_name \
          AND kcu.table_name = tc.table_name \
         WHERE tc.table_schema = current_schema() AND tc.constraint_type = 'PRIMARY KEY' \
         ORDER BY tc.table_name, kcu.ordinal_position",
    )
    .fetch_all(pool)
    .await?;
    for (table, column) in pk {
        if let Some(t) = schema.tables.get_mut(&table) {
            t.primary_key.push(column);
        }
    }

    let constraints: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT rel.relname::text, con.conname::text, con.contype::text, \
                pg_get_constraintdef(con.oid) \
         FROM pg_constraint con \
         JOIN pg_class rel ON rel.oid = con.conrelid \
         JOIN pg_namespace nsp ON nsp.oid = rel.relnamespace \
         WHERE nsp.nspname = current_schema() AND con.contype IN ('p', 'u', 'c', 'f')",
    )
    .fetch_all(pool)
    .await?;
    for (table, name, contype, definition) in constraints {
        let Some(t) = schema.tables.get_mut(&table) else {
            continue;
        };
        let kind = match contype.as_str() {
            "p" => "primary key",
            "u" => "unique",
            "c" => "check",
            _ => "foreign key",
        };
        if kind == "check" {
            let expr = definition
                .strip_prefix("CHECK ")
                .unwrap_or(&definition)
                .trim_end_matches(" NOT VALID");
            t.checks.insert(name.clone(), normalize_check(expr));
        }
        t.constraints.insert(name, kind.to_owned());
    }

    let indexes: Vec<(String, String, bool, bool, String)> = sqlx::query_as(
        "SELECT t.relname::text, i.relname::text, ix.indisunique, ix.indpred IS NOT NULL, \
                a.attname::text \
         FROM pg_index ix \
         JOIN pg_class i ON i.oid = ix.indexrelid \
         JOIN pg_class t ON t.oid = ix.indrelid \
         JOIN pg_namespace nsp ON nsp.oid = t.relnamespace \
         CROSS JOIN LATERAL unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
         WHERE nsp.nspname = current_schema() \
           AND NOT EXISTS (SELECT 1 FROM unnest(ix.indkey::int2[]) AS fk(attnum) \
                           JOIN pg_attribute fa ON fa.attrelid = t.oid AND fa.attnum = fk.attnum \
                           WHERE fa.atttypid = 'tsvector'::regtype) \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c \
                           WHERE c.conindid = ix.indexrelid AND c.conrelid = ix.indrelid \
                             AND c.contype IN ('p', 'u', 'x')) \
         ORDER BY t.relname, i.relname, k.ord",
    )
    .fetch_all(pool)
    .await?;
    for (table, index, unique, partial, column) in indexes {
        if let Some(t) = schema.tables.get_mut(&table) {
            t.indexes
                .entry(index)
                .or_insert_with(|| Index {
                    columns: Vec::new(),
                    unique,
                    partial,
                })
                .columns
                .push(column);
        }
    }

    let fks: Vec<(String, String, String, String, String, String)> = sqlx::query_as(
        "SELECT rel.relname::text, ref.relname::text, \
                (SELECT string_agg(a.attname::text, ',' ORDER BY k.ord) \
                   FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) \
                   JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum), \
                (SELECT string_agg(a.attname::text, ',' ORDER BY k.ord) \
                   FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord) \
                   JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum), \
                con.confdeltype::text, con.confupdtype::text \
         FROM pg_constraint con \
         JOIN pg_class rel ON rel.oid = con.conrelid \
         JOIN pg_class ref ON ref.oid = con.confrelid \
         JOIN pg_namespace nsp ON nsp.oid = rel.relnamespace \
         WHERE nsp.nspname = current_schema() AND con.contype = 'f'",
    )
    .fetch_all(pool)
    .await?;
    for (table, ref_table, columns, ref_columns, on_delete, on_update) in fks {
        if let Some(t) = schema.tables.get_mut(&table) {
            t.foreign_keys.insert(ForeignKey {
                columns: columns.split(',').map(str::to_owned).collect(),
                ref_table,
                ref_columns: ref_columns.split(',').map(str::to_owned).collect(),
                on_delete: pg_fk_action(&on_delete).to_owned(),
                on_update: pg_fk_action(&on_update).to_owned(),
            });
        }
    }
    Ok(schema)
}

/// `pg_constraint.confdeltype` codes spelled as SQLite's `pragma_foreign_key_list` spells them.
fn pg_fk_action(code: &str) -> &'static str {
    match code {
        "r" => "RESTRICT",
        "c" => "CASCADE",
        "n" => "SET NULL",
        "d" => "SET DEFAULT",
        _ => "NO ACTION",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraint_names_are_parsed_from_create_table() {
        let sql = "CREATE TABLE t (
            id INTEGER NOT NULL CONSTRAINT t_pkey PRIMARY KEY AUTOINCREMENT, -- CONSTRAINT fake CHECK (1)
            status TEXT NOT NULL DEFAULT 'CONSTRAINT x CHECK (0)',
            user_id INTEGER CONSTRAINT t_user_fk REFERENCES users (id),
            CONSTRAINT t_sku_key UNIQUE (sku),
            CONSTRAINT \"t_status\" CHECK (status IN ('a', 'b') AND length(status) > 0)
        )";
        let found = parse_sqlite_constraints(sql);
        let names: Vec<(&str, &str)> = found
            .iter()
            .map(|c| (c.name.as_str(), c.kind.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("t_pkey", "primary key"),
                ("t_user_fk", "foreign key"),
                ("t_sku_key", "unique"),
                ("t_status", "check"),
            ]
        );
        let check = found[3].check.as_deref().unwrap();
        assert_eq!(normalize_check(check), "statusin'a','b'andlengthstatus>0");
    }

    #[test]
    fn postgres_check_spelling_normalizes_like_sqlite() {
        assert_eq!(
            normalize_check("((price_cents >= 0))"),
            normalize_check("price_cents >= 0")
        );
        assert_eq!(
            normalize_check("((status = ANY (ARRAY['a'::text, 'b'::text])))"),
            normalize_check("status IN ('a', 'b')")
        );
        assert_eq!(normalize_check("(a <> b)"), normalize_check("a != b"));
        assert_ne!(
            normalize_check("(stock >= 0)"),
            normalize_check("stock > 0")
        );
    }

    #[test]
    fn type_mapping_pairs_the_dialects() {
        for (sqlite, pg) in [
            ("INTEGER", "bigint"),
            ("TEXT", "text"),
            ("DATETIME", "timestamp with time zone"),
            ("BOOLEAN", "boolean"),
        ] {
            assert_eq!(sqlite_type(sqlite), postgres_type(pg), "{sqlite} vs {pg}");
        }
        assert_ne!(sqlite_type("INTEGER"), postgres_type("integer"));
        assert_ne!(sqlite_type("WHATEVER"), postgres_type("WHATEVER"));
    }

    #[test]
    fn diff_reports_each_kind_of_difference() {
        let column = Column {
            ty: "int64".into(),
            not_null: true,
            has_default: false,
            generated: false,
        };
        let mut a = Schema::default();
        let mut t = Table::default();
        t.columns.insert("x".into(), column.clone());
        a.tables.insert("t".into(), t.clone());
        assert!(a.diff(&a.clone(), "l", "r").is_empty());

        let mut b = a.clone();
        b.tables.get_mut("t").unwrap().columns.insert(
            "x".into(),
            Column {
                not_null: false,
                ..column
            },
        );
        b.tables.insert("extra".into(), Table::default());
        let diff = a.diff(&b, "l", "r");
        assert_eq!(diff.len(), 2, "{diff:?}");
        assert!(diff.iter().any(|d| d.contains("table extra: only in r")));
        assert!(diff.iter().any(|d| d.starts_with("t.x:")));
    }
}
