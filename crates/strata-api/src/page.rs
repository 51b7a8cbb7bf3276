//! The wire form of one page of a list: the same four fields for every list endpoint, written
//! once. Each list keeps its own OpenAPI name (`ProductPage`, `OrderPage`, …).

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
