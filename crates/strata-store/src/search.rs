//! Catalog search: filters, sort orders and full-text queries, turned into SQL for either
//! dialect with the *same results* on both.
//!
//! Full text uses each database's own engine: SQLite's FTS5 table `products_fts`
//! (`unicode61` tokenizer) and PostgreSQL's generated `products.search` tsvector (`simple`
//! configuration, GIN index); migration 0002 builds both so they split and fold words alike.
//! The query side is tokenized here, once, into [`SearchText`] (runs of letters and digits,
//! lowercased), and each dialect receives the same terms:
//!
//! - every term must occur in the name or the description (AND);
//! - the last term also matches as a prefix (`cook` finds `cookbook`), so results narrow as
//!   a user types;
//! - `relevance` order puts first the products whose *name* holds every term, then the rest,
//!   each group by ascending id. (Engine scores — FTS5's bm25, PostgreSQL's ts_rank — differ
//!   between dialects, so they are not used: equal results on both matter more here.)
//!
//! Every other order ends with `id`, so pages never overlap or skip, and the name order
//! compares lowercased names byte-wise on both (PostgreSQL `COLLATE "C"`, SQLite's default).

use crate::{Dialect, Page};

/// How a product list is ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProductSort {
    /// By ascending id (the order of insertion): the default.
    #[default]
    Id,
    /// Cheapest first, ties by id.
    PriceAsc,
    /// Dearest first, ties by id.
    PriceDesc,
    /// By name (lowercased, byte-wise), ties by id.
    Name,
    /// Name matches first, then description-only matches, each by id (needs a search text).
    Relevance,
}

impl ProductSort {
    /// Every order, as accepted in `?sort=`.
    pub const ALL: [ProductSort; 5] = [
        ProductSort::Id,
        ProductSort::PriceAsc,
        ProductSort::PriceDesc,
        ProductSort::Name,
        ProductSort::Relevance,
    ];

    /// The name used in `?sort=`: `id`, `price_asc`, `price_desc`, `name`, `relevance`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProductSort::Id => "id",
            ProductSort::PriceAsc => "price_asc",
            ProductSort::PriceDesc => "price_desc",
            ProductSort::Name => "name",
            ProductSort::Relevance => "relevance",
        }
    }

    /// The order of a name from [`ProductSort::as_str`].
    pub fn parse(name: &str) -> Option<ProductSort> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// The terms of a full-text search: lowercase runs of letters and digits, at most
/// [`SearchText::MAX_TERMS`] of at most [`SearchText::MAX_TERM_CHARS`] characters each.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SearchText {
    terms: Vec<String>,
}

impl SearchText {
    /// The most terms a search uses; further words are ignored (each term is one more index
    /// lookup, and shoppers do not type paragraphs).
    pub const MAX_TERMS: usize = 8;
    /// The longest term kept; longer words are cut (no product word is longer).
    pub const MAX_TERM_CHARS: usize = 64;

    /// The terms of `text`, or `None` when it holds no letter or digit (an empty search is
    /// no search: every product matches).
    pub fn parse(text: &str) -> Option<SearchText> {
        let terms: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|word| !word.is_empty())
            .take(Self::MAX_TERMS)
            .map(|word| {
                word.chars()
                    .take(Self::MAX_TERM_CHARS)
                    .flat_map(char::to_lowercase)
                    .collect()
            })
            .collect();
        (!terms.is_empty()).then_some(SearchText { terms })
    }

    /// The terms, in the order written.
    pub fn terms(&self) -> &[String] {
        &self.terms
    }

    /// The terms joined by single spaces: a canonical form, for cache keys.
    pub fn canonical(&self) -> String {
        self.terms.join(" ")
    }

    /// The FTS5 MATCH expression: `"a" AND "b"*`, each term optionally restricted to a column.
    fn fts5(&self, column: Option<&str>) -> String {
        let last = self.terms.len() - 1;
        self.terms
            .iter()
            .enumerate()
            .map(|(i, term)| {
                let prefix = if i == last { "*" } else { "" };
                match column {
                    // Terms hold letters and digits only, so quoting cannot be escaped.
                    Some(column) => format!("{column} : \"{term}\"{prefix}"),
                    None => format!("\"{term}\"{prefix}"),
                }
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// The `to_tsquery` text: `a & b:*`, each term optionally restricted to a weight.
    fn tsquery(&self, weight: Option<char>) -> String {
        let last = self.terms.len() - 1;
        self.terms
            .iter()
            .enumerate()
            .map(|(i, term)| {
                let prefix = if i == last { "*" } else { "" };
                match (weight, prefix) {
                    (Some(w), p) => format!("{term}:{p}{w}"),
                    (None, "") => term.clone(),
                    (None, p) => format!("{term}:{p}"),
                }
            })
            .collect::<Vec<_>>()
            .join(" & ")
    }
}

/// What a catalog list request asks for: an optional search text, filters, an order and a
/// page. Built (and validated) by the api from the query string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProductQuery {
    /// Full-text terms over name and description.
    pub text: Option<SearchText>,
    /// Exact category slug.
    pub category: Option<String>,
    /// Lowest price in cents, inclusive.
    pub min_price: Option<i64>,
    /// Highest price in cents, inclusive.
    pub max_price: Option<i64>,
    /// The order; [`ProductSort::Relevance`] without a text orders by id.
    pub sort: ProductSort,
    /// Which page.
    pub page: Page,
}

/// A value bound to a numbered placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

/// The SQL of one list request: the `FROM … WHERE …` part shared by the count and the page,
/// the `ORDER BY`, and the values of its placeholders (`$1`, `$2`, … in both dialects).
#[derive(Debug)]
pub(crate) struct ListSql {
    /// `FROM products p WHERE …`.
    pub from_where: String,
    /// `ORDER BY …` (may use placeholders too).
    pub order_by: String,
    /// Placeholder values, `$1` first: those of `from_where`, then those of `order_by`.
    pub binds: Vec<Bind>,
    /// How many of `binds` belong to `from_where` (all a count statement may bind: PostgreSQL
    /// prepares a statement with one parameter per bound value, so a count bound with the
    /// order's values too would not match the same text prepared by another request).
    pub where_binds: usize,
}

impl ProductQuery {
    /// Builds the statement parts for `dialect`. Only fixed fragments and numbered placeholders
    /// go into the SQL text; every value from the client is bound.
    pub(crate) fn to_sql(&self, dialect: Dialect) -> ListSql {
        /// Adds a value and returns its placeholder.
        fn bind(binds: &mut Vec<Bind>, value: Bind) -> String {
            binds.push(value);
            format!("${}", binds.len())
        }
        let mut binds = Vec::new();
        let mut conditions = Vec::new();
        if let Some(text) = &self.text {
            let condition = match dialect {
                Dialect::Sqlite => format!(
                    "p.id IN (SELECT rowid FROM products_fts WHERE products_fts MATCH {})",
                    bind(&mut binds, Bind::Text(text.fts5(None)))
                ),
                Dialect::Postgres => format!(
                    "p.search @@ to_tsquery('simple', {})",
                    bind(&mut binds, Bind::Text(text.tsquery(None)))
                ),
            };
            conditions.push(condition);
        }
        if let Some(category) = &self.category {
            conditions.push(format!(
                "p.category = {}",
                bind(&mut binds, Bind::Text(category.clone()))
            ));
        }
        if let Some(min) = self.min_price {
            conditions.push(format!(
                "p.price_cents >= {}",
                bind(&mut binds, Bind::Int(min))
            ));
        }
        if let Some(max) = self.max_price {
            conditions.push(format!(
                "p.price_cents <= {}",
                bind(&mut binds, Bind::Int(max))
            ));
        }
        let where_binds = binds.len();
        let mut from_where = String::from("FROM products p");
        if !conditions.is_empty() {
            from_where.push_str(" WHERE ");
            from_where.push_str(&conditions.join(" AND "));
        }
        let order_by = match (self.sort, &self.text) {
            (ProductSort::Id, _) | (ProductSort::Relevance, None) => "ORDER BY p.id".to_owned(),
            (ProductSort::PriceAsc, _) => "ORDER BY p.price_cents, p.id".to_owned(),
            (ProductSort::PriceDesc, _) => "ORDER BY p.price_cents DESC, p.id".to_owned(),
            (ProductSort::Name, _) => match dialect {
                Dialect::Sqlite => "ORDER BY lower(p.name), p.id".to_owned(),
                Dialect::Postgres => "ORDER BY lower(p.name) COLLATE \"C\", p.id".to_owned(),
            },
            (ProductSort::Relevance, Some(text)) => {
                let in_name = match dialect {
                    Dialect::Sqlite => format!(
                        "p.id IN (SELECT rowid FROM products_fts WHERE products_fts MATCH {})",
                        bind(&mut binds, Bind::Text(text.fts5(Some("name"))))
                    ),
                    Dialect::Postgres => format!(
                        "p.search @@ to_tsquery('simple', {})",
                        bind(&mut binds, Bind::Text(text.tsquery(Some('A'))))
                    ),
                };
                format!("ORDER BY CASE WHEN {in_name} THEN 0 ELSE 1 END, p.id")
            }
        };
        ListSql {
            from_where,
            order_by,
            binds,
            where_binds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_split_into_lowercase_alphanumeric_terms() {
        let text = SearchText::parse("  Full-colour   COOKBOOK's, 400 Café_x ").unwrap();
        assert_eq!(
            text.terms(),
            ["full", "colour", "cookbook", "s", "400", "café", "x"]
        );
        assert_eq!(text.canonical(), "full colour cookbook s 400 café x");
        assert_eq!(SearchText::parse(" -- ,, "), None);
        assert_eq!(SearchText::parse(""), None);
        let many = SearchText::parse(&"w ".repeat(100)).unwrap();
        assert_eq!(many.terms().len(), SearchText::MAX_TERMS);
        let long = SearchText::parse(&"y".repeat(1000)).unwrap();
        assert_eq!(long.terms()[0].len(), SearchText::MAX_TERM_CHARS);
    }

    #[test]
    fn both_dialects_get_the_same_terms_with_a_prefix_on_the_last() {
        let text = SearchText::parse("pocket cook").unwrap();
        assert_eq!(text.fts5(None), "\"pocket\" AND \"cook\"*");
        assert_eq!(
            text.fts5(Some("name")),
            "name : \"pocket\" AND name : \"cook\"*"
        );
        assert_eq!(text.tsquery(None), "pocket & cook:*");
        assert_eq!(text.tsquery(Some('A')), "pocket:A & cook:*A");
    }

    #[test]
    fn every_value_is_bound_not_formatted() {
        let query = ProductQuery {
            text: SearchText::parse("lamp"),
            category: Some("x' OR 1=1 --".into()),
            min_price: Some(100),
            max_price: Some(200),
            sort: ProductSort::Relevance,
            page: Page::default(),
        };
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let sql = query.to_sql(dialect);
            assert!(!sql.from_where.contains("OR 1=1"), "{sql:?}");
            assert_eq!((sql.binds.len(), sql.where_binds), (5, 4), "{sql:?}");
            assert!(sql.from_where.contains("$4") && sql.order_by.contains("$5"));
        }
    }

    #[test]
    fn sorts_round_trip_through_their_names() {
        for sort in ProductSort::ALL {
            assert_eq!(ProductSort::parse(sort.as_str()), Some(sort));
        }
        assert_eq!(ProductSort::parse("price"), None);
    }
}
