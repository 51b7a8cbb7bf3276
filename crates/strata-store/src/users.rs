//! Accounts: the rows behind `POST /users`, `POST /sessions`, `GET /users/me` and an admin's
//! `GET /users`; and the stored role that role-gated decisions read ([`UserRepo::role`]).
//!
//! The repository stores what it is given: emails arrive lowercased and validated, passwords
//! arrive as argon2id hashes (both done in the api, at the boundary).

use std::fmt;

use strata_core::auth::UserRole;
use time::OffsetDateTime;

use crate::store::{Store, dispatch};
use crate::{Page, StoreError};

/// The columns of a user, in the order of [`User`]'s fields.
macro_rules! user_columns {
    () => {
        "id, email, display_name, password_hash, role, created_at"
    };
}

/// An account as stored. Its `Debug` leaves the password hash out.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    /// Assigned by the database, increasing, never reused.
    pub id: i64,
    /// Lowercase, unique.
    pub email: String,
    /// Shown to other people (support chat, order pages).
    pub display_name: String,
    /// argon2id PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub password_hash: String,
    /// What the account may do.
    #[sqlx(try_from = "String")]
    pub role: UserRole,
    /// When the account was created (UTC).
    pub created_at: OffsetDateTime,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("display_name", &self.display_name)
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// The fields of a new account; the database assigns id and creation time.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Lowercase email (unique).
    pub email: String,
    /// Display name, trimmed.
    pub display_name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Initial role.
    pub role: UserRole,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("email", &self.email)
            .field("display_name", &self.display_name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Which accounts [`UserRepo::list`] returns: those passing every filter given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// Only accounts whose (lowercase) email contains this text, taken literally (`%` and `_`
    /// are no wildcards).
    pub email_contains: Option<String>,
    /// Only accounts with this role.
    pub role: Option<UserRole>,
}

/// One page of accounts, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserPage {
    /// The accounts of this page.
    pub items: Vec<User>,
    /// How many accounts pass the filter.
    pub total: i64,
    /// The 1-based page number asked for.
    pub page: u32,
    /// The page size asked for.
    pub per_page: u32,
}

/// The `WHERE` condition of [`UserFilter`]: `$1` a `LIKE` pattern (escape character `\`),
/// `$2` a role, each NULL when not filtered on.
macro_rules! user_filter {
    () => {
        "($1 IS NULL OR email LIKE $1 ESCAPE '\\') AND ($2 IS NULL OR role = $2)"
    };
}

/// `text` as a `LIKE` pattern that matches it anywhere, its wildcards escaped.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The account repository: `store.users()`.
#[derive(Clone, Copy, Debug)]
pub struct UserRepo<'a> {
    store: &'a Store,
}

impl<'a> UserRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Creates an account and returns it as stored.
    ///
    /// # Errors
    /// [`StoreError::Constraint`] of kind `Unique` (constraint `users_email_key` on PostgreSQL,
    /// `users.email` on SQLite) when the email is taken; see [`StoreError::is_unique_violation`].
    pub async fn insert(&self, new: &NewUser) -> Result<User, StoreError> {
        let user = dispatch!(self.store, pool => {
            sqlx::query_as(concat!(
                "INSERT INTO users (email, display_name, password_hash, role) ",
                "VALUES ($1, $2, $3, $4) RETURNING ",
                user_columns!()
            ))
            .bind(&new.email)
            .bind(&new.display_name)
            .bind(&new.password_hash)
            .bind(new.role.as_str())
            .fetch_one(pool)
            .await?
        });
        Ok(user)
    }

    /// The account with this id, or `None`.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn get(&self, id: i64) -> Result<Option<User>, StoreError> {
        let user = dispatch!(self.store, pool => {
            sqlx::query_as(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(user)
    }

    /// The account with this (lowercase) email, or `None`.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn find_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let user = dispatch!(self.store, pool => {
            sqlx::query_as(concat!("SELECT ", user_columns!(), " FROM users WHERE email = $1"))
                .bind(email)
                .fetch_optional(pool)
                .await?
        });
        Ok(user)
    }

    /// The role the account `id` has now, or `None` when no account has this id. Decisions
    /// that depend on a role read it here, so a grant or a revocation applies to the
    /// account's next request, whatever its token says.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn role(&self, id: i64) -> Result<Option<UserRole>, StoreError> {
        let role: Option<String> = dispatch!(self.store, pool => {
            sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        role.map(|r| {
            r.parse().map_err(|_| {
                StoreError::Database(sqlx::Error::Decode(format!("unknown role {r:?}").into()))
            })
        })
        .transpose()
    }

    /// One page of the accounts that pass `filter`, oldest first, with how many pass it.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn list(&self, filter: &UserFilter, page: Page) -> Result<UserPage, StoreError> {
        let pattern = filter.email_contains.as_deref().map(contains_pattern);
        let role = filter.role.map(UserRole::as_str);
        let (total, items) = dispatch!(self.store, pool => {
            let total: i64 = sqlx::query_scalar(concat!(
                "SELECT COUNT(*) FROM users WHERE ", user_filter!()
            ))
            .bind(pattern.as_deref())
            .bind(role)
            .fetch_one(pool)
            .await?;
            let items: Vec<User> = sqlx::query_as(concat!(
                "SELECT ", user_columns!(), " FROM users WHERE ", user_filter!(),
                " ORDER BY id LIMIT $3 OFFSET $4"
            ))
            .bind(pattern.as_deref())
            .bind(role)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(pool)
            .await?;
            (total, items)
        });
        Ok(UserPage {
            items,
            total,
            page: page.page(),
            per_page: page.per_page(),
        })
    }

    /// Gives the account `id` the role `role`; returns the updated account, or `None` when no
    /// account has this id.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn set_role(&self, id: i64, role: UserRole) -> Result<Option<User>, StoreError> {
        let user = dispatch!(self.store, pool => {
            sqlx::query_as(concat!(
                "UPDATE users SET role = $1 WHERE id = $2 RETURNING ",
                user_columns!()
            ))
            .bind(role.as_str())
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(user)
    }

    /// Makes sure an admin account with `new.email` exists: creates it from `new` (with the
    /// role `admin`, whatever `new.role` says) when missing, otherwise promotes the existing
    /// account to admin and leaves its password and name alone.
    ///
    /// One statement (`INSERT … ON CONFLICT (email) DO UPDATE`), so instances that bootstrap
    /// the same admin at once all succeed and end with one account.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn ensure_admin(&self, new: &NewUser) -> Result<User, StoreError> {
        let user = dispatch!(self.store, pool => {
            sqlx::query_as(concat!(
                "INSERT INTO users (email, display_name, password_hash, role) ",
                "VALUES ($1, $2, $3, 'admin') ",
                "ON CONFLICT (email) DO UPDATE SET role = 'admin' RETURNING ",
                user_columns!()
            ))
            .bind(&new.email)
            .bind(&new.display_name)
            .bind(&new.password_hash)
            .fetch_one(pool)
            .await?
        });
        Ok(user)
    }

    /// How many accounts exist.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn count(&self) -> Result<i64, StoreError> {
        let count = dispatch!(self.store, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM users")
                .fetch_one(pool)
                .await?
        });
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_patterns_escape_the_wildcards() {
        assert_eq!(contains_pattern("ann"), "%ann%");
        assert_eq!(contains_pattern("a_b%c\\d"), "%a\\_b\\%c\\\\d%");
        assert_eq!(contains_pattern(""), "%%");
    }
}
