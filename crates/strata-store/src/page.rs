//! Pagination requests, validated once where they enter (the HTTP query string) so repositories
//! never see a page 0 or an unbounded page size.

/// A valid page request: 1-based page number and a page size in `1..=Page::MAX_PER_PAGE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    page: u32,
    per_page: u32,
}

/// Why a page request was refused; the API answers it with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// Pages are numbered from 1.
    #[error("page must be at least 1, got {0}")]
    PageZero(u32),
    /// The page size is outside `1..=Page::MAX_PER_PAGE`.
    #[error("per_page must be between 1 and {max}, got {0}", max = Page::MAX_PER_PAGE)]
    PerPageOutOfRange(u32),
}

impl Page {
    /// The largest page size served: bounds the work and the response size of one request.
    pub const MAX_PER_PAGE: u32 = 100;
    /// The page size used when a client does not ask for one.
    pub const DEFAULT_PER_PAGE: u32 = 20;

    /// Validates a page request.
    ///
    /// # Errors
    /// [`PageError`] when `page` is 0 or `per_page` is outside `1..=100`.
    pub fn new(page: u32, per_page: u32) -> Result<Page, PageError> {
        if page == 0 {
            return Err(PageError::PageZero(page));
        }
        if !(1..=Self::MAX_PER_PAGE).contains(&per_page) {
            return Err(PageError::PerPageOutOfRange(per_page));
        }
        Ok(Page { page, per_page })
    }

    /// The 1-based page number.
    pub fn page(self) -> u32 {
        self.page
    }

    /// The page size.
    pub fn per_page(self) -> u32 {
        self.per_page
    }

    /// How many rows come before this page (`LIMIT per_page OFFSET offset`).
    pub fn offset(self) -> i64 {
        (i64::from(self.page) - 1) * i64::from(self.per_page)
    }

    /// The page size as a SQL `LIMIT`.
    pub fn limit(self) -> i64 {
        i64::from(self.per_page)
    }
}

impl Default for Page {
    /// The first page of [`Page::DEFAULT_PER_PAGE`] items.
    fn default() -> Self {
        Page {
            page: 1,
            per_page: Self::DEFAULT_PER_PAGE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_enforced() {
        assert_eq!(Page::new(0, 10), Err(PageError::PageZero(0)));
        assert_eq!(Page::new(1, 0), Err(PageError::PerPageOutOfRange(0)));
        assert_eq!(Page::new(1, 101), Err(PageError::PerPageOutOfRange(101)));
        assert!(Page::new(1, 1).is_ok());
        assert!(Page::new(u32::MAX, 100).is_ok());
    }

    #[test]
    fn offset_counts_rows_before_the_page() {
        assert_eq!(Page::new(1, 20).unwrap().offset(), 0);
        assert_eq!(Page::new(3, 20).unwrap().offset(), 40);
        // No overflow at the extremes: u32 * 100 fits in i64.
        assert_eq!(
            Page::new(u32::MAX, 100).unwrap().offset(),
            (i64::from(u32::MAX) - 1) * 100
        );
    }

    #[test]
    fn default_is_valid() {
        let page = Page::default();
        assert_eq!(Page::new(page.page(), page.per_page()), Ok(page));
    }

    #[test]
    fn errors_explain_the_limit() {
        let err = Page::new(1, 500).unwrap_err();
        assert_eq!(
            err.to_string(),
            "per_page must be between 1 and 100, got 500"
        );
    }
}
