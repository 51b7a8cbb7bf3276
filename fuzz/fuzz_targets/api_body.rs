//! The api's JSON request bodies, each read by the extractor its handler uses and then by the
//! handler's own field checks (those made before the store is asked).
//!
//! Input: a byte choosing the body (cart line, quote, checkout, product, product change,
//! registration, log-in, role), then the body. Properties:
//! - a refused body is the client's fault: a 4xx with a JSON error body, never a 5xx, and an
//!   error message of bounded length whatever the body's size;
//! - accepted values are within their documented ranges (a product's sku, name, category,
//!   price and stock; a registration's email and display name; a pricing's region and coupon);
//! - reading is deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_api::ApiError;
use strata_api::extract::MAX_MESSAGE_CHARS;
use strata_api::fuzzing::{Accepted, BodyKind, body, status_of};

/// Longest message an error may carry: a decoder's report is cut to `MAX_MESSAGE_CHARS`; the
/// field checks' own messages are short constants around it.
const MAX_ERROR_CHARS: usize = MAX_MESSAGE_CHARS + 200;

fn refused(error: ApiError) {
    let message = error.to_string();
    assert!(
        message.chars().count() <= MAX_ERROR_CHARS,
        "an error message of {} characters",
        message.chars().count()
    );
    let (status, content_type) = status_of(error);
    assert!(status.is_client_error(), "a bad body answered {status}");
    assert_eq!(content_type.as_deref(), Some("application/json"));
}

fn no_control(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

fn check_product_name(name: &str) {
    let chars = name.chars().count();
    assert!((1..=200).contains(&chars));
    assert_eq!(name.trim(), name);
    assert!(no_control(name));
}

fn check_description(text: &str) {
    assert!(text.chars().count() <= 5000);
    assert!(
        !text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    );
}

fn check_category(slug: &str) {
    assert!((1..=64).contains(&slug.len()));
    assert!(
        slug.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    );
}

fn check(accepted: &Accepted) {
    match accepted {
        Accepted::Checked => {}
        Accepted::Pricing(region, coupon) => {
            if let Some(region) = region {
                assert!((1..=16).contains(&region.len()));
                assert_eq!(region.to_ascii_uppercase(), *region);
            }
            if let Some(coupon) = coupon {
                assert!((1..=32).contains(&coupon.len()));
                assert_eq!(coupon.to_ascii_uppercase(), *coupon);
            }
        }
        Accepted::NewProduct(p) => {
            assert!((1..=64).contains(&p.sku.len()));
            assert!(
                p.sku
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            );
            check_product_name(&p.name);
            check_description(&p.description);
            check_category(&p.category);
            assert!((0..=1_000_000_000_000).contains(&p.price_cents));
            assert!((0..=1_000_000_000).contains(&p.stock));
        }
        Accepted::ProductUpdate(u) => {
            if let Some(name) = &u.name {
                check_product_name(name);
            }
            if let Some(text) = &u.description {
                check_description(text);
            }
            if let Some(slug) = &u.category {
                check_category(slug);
            }
            if let Some(price) = u.price_cents {
                assert!((0..=1_000_000_000_000).contains(&price));
            }
            if let Some(stock) = u.stock {
                assert!((0..=1_000_000_000).contains(&stock));
            }
        }
        Accepted::Register {
            email,
            display_name,
        } => {
            assert!(email.len() <= 254, "{email:?}");
            assert_eq!(email.matches('@').count(), 1, "{email:?}");
            assert_eq!(email.to_lowercase(), *email, "emails are kept lower case");
            let chars = display_name.chars().count();
            assert!((1..=64).contains(&chars));
            assert_eq!(display_name.trim(), display_name);
            assert!(no_control(display_name));
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, bytes)) = input.split_first() else {
        return;
    };
    let kind = BodyKind::ALL[usize::from(selector) % BodyKind::ALL.len()];
    match body(kind, bytes) {
        Ok(accepted) => {
            check(&accepted);
            let again = body(kind, bytes).expect("accepted once, refused after");
            assert_eq!(format!("{again:?}"), format!("{accepted:?}"));
        }
        Err(error) => {
            let first = error.to_string();
            refused(error);
            let again = body(kind, bytes).err().map(|e| e.to_string());
            assert_eq!(again, Some(first));
        }
    }
});
