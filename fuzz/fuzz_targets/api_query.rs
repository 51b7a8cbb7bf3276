//! The api's query strings: the product list's (`GET /api/v1/products`), the cart's pricing
//! (`?region=&coupon=`) and the order list's pages, each read by the extractor its handler
//! uses.
//!
//! Input: the query string (after `?`). Properties:
//! - a refused query is the client's fault: a 4xx with a JSON error body, never a 5xx;
//! - an accepted product query is within its documented ranges: page at least 1, 1 to 100
//!   per page, prices from 0 to 10^12 cents with the minimum not above the maximum, a
//!   category slug of `a-z 0-9 -`, `relevance` only with search words;
//! - an accepted pricing is normalised: a region of 1 to 16 upper-case letters, digits or
//!   `-`, a coupon of 1 to 32 upper-case letters, digits, `-` or `_`;
//! - reading is deterministic.
#![no_main]

use http::Uri;
use libfuzzer_sys::fuzz_target;
use strata_api::ApiError;
use strata_api::fuzzing::{orders_query, price_query, products_query, status_of};
use strata_store::{Page, ProductSort};

fn refused(error: ApiError) {
    let (status, content_type) = status_of(error);
    assert!(status.is_client_error(), "a bad query answered {status}");
    assert_eq!(content_type.as_deref(), Some("application/json"));
}

fn check_page(page: Page) {
    assert!(page.page() >= 1);
    assert!((1..=Page::MAX_PER_PAGE).contains(&page.per_page()));
}

fuzz_target!(|input: &[u8]| {
    let Ok(query) = std::str::from_utf8(input) else {
        return;
    };
    // Only what hyper would accept as a request target reaches the api.
    let Ok(uri) = format!("/api/v1/products?{query}").parse::<Uri>() else {
        return;
    };

    match products_query(&uri) {
        Ok(q) => {
            check_page(q.page);
            for price in [q.min_price, q.max_price].into_iter().flatten() {
                assert!((0..=1_000_000_000_000).contains(&price));
            }
            // A minimum above the maximum is accepted: no product matches (as documented).
            if let Some(category) = &q.category {
                assert!((1..=64).contains(&category.len()));
                assert!(
                    category
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                );
            }
            if q.sort == ProductSort::Relevance {
                assert!(q.text.is_some());
            }
            if let Some(text) = &q.text {
                assert!(!text.terms().is_empty());
            }
            let again = products_query(&uri).expect("accepted once, refused after");
            assert_eq!(again, q);
        }
        Err(error) => refused(error),
    }

    match price_query(&uri) {
        Ok((region, coupon)) => {
            if let Some(region) = region {
                assert!((1..=16).contains(&region.len()));
                assert!(
                    region
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-'),
                    "{region:?}"
                );
            }
            if let Some(coupon) = coupon {
                assert!((1..=32).contains(&coupon.len()));
                assert!(
                    coupon.bytes().all(|b| b.is_ascii_uppercase()
                        || b.is_ascii_digit()
                        || b == b'-'
                        || b == b'_'),
                    "{coupon:?}"
                );
            }
        }
        Err(error) => refused(error),
    }

    match orders_query(&uri) {
        Ok(page) => check_page(page),
        Err(error) => refused(error),
    }
});
