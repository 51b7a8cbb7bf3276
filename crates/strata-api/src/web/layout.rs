//! [`Layout`]: what the frame of every page shows (`web/templates/base.html`): who is signed
//! in, the display currency and the picker of currencies, and the page's own path (for the
//! forms that come back to it). And [`SignedIn`], the visitor a page needs signed in.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;

use super::currency::{Currencies, Currency};
use super::error::PageError;
use crate::auth::{AuthUser, OptionalAuthUser, Tokens};
use crate::state::AppState;

/// The frame of a page.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// The signed-in visitor's email; `None` for a visitor.
    pub user: Option<String>,
    /// The currency prices are shown in.
    pub currency: Currency,
    /// The currencies to pick from: code and whether it is the one shown.
    pub currencies: Vec<(String, bool)>,
    /// This page's path and query: where the frame's forms come back to.
    pub here: String,
}

impl Layout {
    /// A frame for `user` in `currency`, at `here`.
    fn new(user: Option<String>, currency: &Currency, table: &Currencies, here: String) -> Self {
        Self {
            user,
            currency: currency.clone(),
            currencies: table
                .all()
                .iter()
                .map(|c| (c.code.clone(), c.code == currency.code))
                .collect(),
            here,
        }
    }

    /// The frame of a page drawn without reading the request (an error page, until
    /// `error::in_visitor_frame` draws it again in the asking visitor's): a visitor, in the
    /// base currency.
    pub(crate) fn stranger() -> Self {
        let table = Currencies::default();
        Self::new(None, table.base(), &table, "/".to_owned())
    }

    /// `cents` of the base currency as this page shows them.
    pub(crate) fn price(&self, cents: i64) -> String {
        self.currency.format(cents)
    }
}

impl FromRequestParts<AppState> for Layout {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let Visitor(user) = Visitor::from_request_parts(parts, state).await?;
        let user = user.map(|user| user.email);
        let here = parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        let currency = state.currencies.chosen(&parts.headers);
        Ok(Self::new(user, currency, &state.currencies, here))
    }
}

/// The signed-in visitor of a page that needs one; a visitor without a valid session goes to
/// the log-in page, which sends them back here.
#[derive(Clone, Debug)]
pub(crate) struct SignedIn(pub AuthUser);

impl<S> FromRequestParts<S> for SignedIn
where
    Tokens: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PageError> {
        let Visitor(user) = Visitor::from_request_parts(parts, state).await?;
        match user {
            Some(user) => Ok(Self(user)),
            None => Err(PageError::LogInFirst {
                next: super::local_path(parts.uri.path_and_query().map(|p| p.as_str())),
            }),
        }
    }
}

/// The visitor of a page that serves everyone: the signed-in account when the session
/// verifies, else `None` (a stale session makes a visitor, not a refused page).
#[derive(Clone, Debug)]
pub(crate) struct Visitor(pub Option<AuthUser>);

impl<S> FromRequestParts<S> for Visitor
where
    Tokens: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PageError> {
        Ok(Self(
            OptionalAuthUser::from_request_parts(parts, state)
                .await
                .ok()
                .and_then(|OptionalAuthUser(user)| user),
        ))
    }
}
