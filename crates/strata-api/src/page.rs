//! The wire form of one page of a list: the same four fields for every list endpoint, written
//! once. Each list keeps its own OpenAPI name (`ProductPage`, `OrderPage`, …). And the other
//! way: `page` and `per_page` of a list request, parsed ([`page`]) and documented
//! ([`page_schema`], [`per_page_schema`]) from the same limits.

use strata_store::Page;
use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, SchemaFormat, Type};

use crate::ApiError;

/// The highest page number asked for: the largest `int32`, as the document declares (a page
/// that far out is empty anyway).
pub(crate) const MAX_PAGE: u32 = i32::MAX as u32;

/// The page a list request asks for, `page` (default 1) and `per_page` (default
/// [`Page::DEFAULT_PER_PAGE`]) as decoded.
///
/// # Errors
/// [`ApiError::InvalidQuery`] for a page outside `1..=`[`MAX_PAGE`] or a size outside
/// `1..=`[`Page::MAX_PER_PAGE`].
pub(crate) fn page(page: Option<u32>, per_page: Option<u32>) -> Result<Page, ApiError> {
    let page = page.unwrap_or(1);
    if page > MAX_PAGE {
        return Err(ApiError::InvalidQuery(format!(
            "page must be at most {MAX_PAGE}, got {page}"
        )));
    }
    Page::new(page, per_page.unwrap_or(Page::DEFAULT_PER_PAGE))
        .map_err(|e| ApiError::InvalidQuery(e.to_string()))
}

fn int32(min: u32, max: u32, description: String) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
        .minimum(Some(min))
        .maximum(Some(max))
        .description(Some(description))
        .build()
}

/// The schema of `page`, from [`page`]'s limits.
pub(crate) fn page_schema() -> Object {
    int32(
        1,
        MAX_PAGE,
        format!("1-based page number, 1 to {MAX_PAGE} (default 1)."),
    )
}

/// The schema of `per_page`, from [`page`]'s limits.
pub(crate) fn per_page_schema() -> Object {
    int32(
        1,
        Page::MAX_PER_PAGE,
        format!(
            "Page size, 1 to {} (default {}).",
            Page::MAX_PER_PAGE,
            Page::DEFAULT_PER_PAGE
        ),
    )
}

/// Declares `$view`, one page of `$item`s as the client sees it (OpenAPI name `$schema`), and
/// its conversion from the store's page of rows `$rows`.
macro_rules! page_view {
    (
        $(#[doc = $doc:expr])*
        $view:ident as $schema:ident: $item:ident from $rows:ty;
        items: $items_doc:literal,
        total: $total_doc:literal $(,)?
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, serde::Serialize, utoipa::ToSchema)]
        #[schema(as = $schema)]
        pub struct $view {
            #[doc = $items_doc]
            pub items: Vec<$item>,
            #[doc = $total_doc]
            pub total: i64,
            /// The 1-based page number that was asked for.
            pub page: u32,
            /// The page size that was asked for (the last page may hold fewer items).
            pub per_page: u32,
        }

        impl From<$rows> for $view {
            fn from(page: $rows) -> Self {
                Self {
                    items: page.items.into_iter().map($item::from).collect(),
                    total: page.total,
                    page: page.page,
                    per_page: page.per_page,
                }
            }
        }
    };
}

pub(crate) use page_view;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_stay_within_the_documented_int32() {
        let first = page(None, None).unwrap();
        assert_eq!(
            (first.page(), first.per_page()),
            (1, Page::DEFAULT_PER_PAGE)
        );
        assert!(page(Some(MAX_PAGE), Some(1)).is_ok());
        for (p, n) in [
            (Some(MAX_PAGE + 1), None),
            (Some(0), None),
            (None, Some(0)),
            (None, Some(101)),
        ] {
            assert!(
                matches!(page(p, n), Err(ApiError::InvalidQuery(_))),
                "{p:?} {n:?}"
            );
        }
    }
}
