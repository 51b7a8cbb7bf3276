//! Passwords: the [`Password`] newtype (length rules, redacting `Debug`) and [`Passwords`], which
//! hashes and verifies them with argon2id off the async runtime.
//!
//! Hashing is deliberately expensive (memory and time), so it runs on tokio's blocking pool
//! and at most [`Passwords::max_concurrent`] hashes run at once per instance: a burst of
//! log-ins queues instead of exhausting memory or starving the request threads.

use std::fmt;
use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OnceCell, Semaphore};

use crate::ApiError;

/// argon2id cost parameters.
///
/// The default is OWASP's first recommendation for argon2id (Password Storage Cheat Sheet):
/// 19 MiB of memory, 2 passes, 1 lane — about 20–40 ms per hash on one core of a current
/// server, slow enough to make offline guessing costly, cheap enough for interactive log-ins.
/// Tests use [`PasswordParams::FAST_INSECURE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory per hash in KiB (argon2's `m`). At least 8.
    pub memory_kib: u32,
    /// Passes over the memory (argon2's `t`). At least 1.
    pub iterations: u32,
    /// Lanes (argon2's `p`). At least 1.
    pub parallelism: u32,
}

impl PasswordParams {
    /// The smallest parameters argon2 accepts: for tests only, never for real passwords.
    pub const FAST_INSECURE: PasswordParams = PasswordParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// A password as the client sent it. Its `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The fewest characters a new password may have (NIST SP 800-63B's minimum).
    pub const MIN_CHARS: usize = 8;
    /// The most characters a password may have: long passphrases fit, megabyte "passwords"
    /// that would only cost hashing time do not.
    pub const MAX_CHARS: usize = 128;

    /// A password for a new account: [`Password::MIN_CHARS`]..=[`Password::MAX_CHARS`]
    /// characters, taken as given (no trimming: spaces may be part of it).
    ///
    /// # Errors
    /// The rule it breaks, for an `invalid_field` answer.
    pub fn new(raw: String) -> Result<Password, String> {
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(format!("must have at least {} characters", Self::MIN_CHARS));
        }
        if chars > Self::MAX_CHARS {
            return Err(format!("must have at most {} characters", Self::MAX_CHARS));
        }
        Ok(Password(raw))
    }

    /// A password as offered at log-in: no rules, since it is only compared.
    pub fn offered(raw: String) -> Password {
        Password(raw)
    }

    /// The password itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Hashes and verifies passwords. Cheap to clone; clones share the concurrency limit.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    permits: Semaphore,
    /// A hash of a random password with the same parameters, verified against when the
    /// account does not exist, so that an unknown email costs as much time as a wrong
    /// password. Computed on first use.
    dummy: OnceCell<String>,
}

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Passwords")
            .field("params", &self.inner.params)
            .finish_non_exhaustive()
    }
}

impl Passwords {
    /// Hashes running at once per instance beyond which callers wait: two per core, so the
    /// blocking pool stays busy without holding hundreds of 19 MiB buffers.
    pub fn max_concurrent() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
    }

    /// A hasher with these parameters.
    ///
    /// # Errors
    /// [`ApiError::Role`] (invalid settings) when argon2 refuses the parameters.
    pub fn new(params: PasswordParams) -> Result<Passwords, ApiError> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|_| ApiError::settings("invalid argon2 parameters"))?;
        Ok(Passwords {
            inner: Arc::new(Inner {
                params,
                permits: Semaphore::new(Self::max_concurrent()),
                dummy: OnceCell::new(),
            }),
        })
    }

    /// The argon2id PHC string of `password`, with a fresh random salt.
    ///
    /// # Errors
    /// [`ApiError::Credentials`] when hashing fails (out of memory, no randomness).
    pub async fn hash(&self, password: &Password) -> Result<String, ApiError> {
        let password = password.expose().to_owned();
        self.blocking(move |argon| {
            argon
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|e| ApiError::Credentials(format!("cannot hash a password: {e}")))
        })
        .await
    }

    /// Whether `password` matches `hash`. With `hash == None` (no such account) the password is
    /// checked against a dummy hash, which takes as long and always fails.
    ///
    /// A stored hash that does not parse counts as a mismatch (and is logged): the account
    /// cannot log in, but nothing else fails.
    ///
    /// # Errors
    /// [`ApiError::Credentials`] when the dummy hash cannot be made.
    pub async fn verify(&self, password: &Password, hash: Option<&str>) -> Result<bool, ApiError> {
        let (hash, real) = match hash {
            Some(hash) => (hash.to_owned(), true),
            None => (self.dummy_hash().await?, false),
        };
        let password = password.expose().to_owned();
        let matched = self
            .blocking(move |argon| {
                Ok(
                    match argon.verify_password(password.as_bytes(), hash.as_str()) {
                        Ok(()) => true,
                        Err(argon2::password_hash::Error::PasswordInvalid) => false,
                        Err(e) => {
                            tracing::error!(error = %e, "a stored password hash does not parse");
                            false
                        }
                    },
                )
            })
            .await?;
        Ok(matched && real)
    }

    async fn dummy_hash(&self) -> Result<String, ApiError> {
        self.inner
            .dummy
            // Its password does not matter: a match against it is never reported.
            .get_or_try_init(|| async {
                self.hash(&Password("strata-dummy-password".into())).await
            })
            .await
            .cloned()
    }

    /// Runs `work` with an argon2id context on the blocking pool, within the concurrency limit.
    async fn blocking<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Argon2<'static>) -> Result<T, ApiError> + Send + 'static,
    {
        let _permit =
            self.inner.permits.acquire().await.map_err(|_| {
                ApiError::Unexpected("the password hashing semaphore closed".into())
            })?;
        let params = self.inner.params.clone();
        tokio::task::spawn_blocking(move || {
            let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
            work(&argon)
        })
        .await
        .map_err(|e| ApiError::Unexpected(format!("password hashing task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passwords() -> Passwords {
        Passwords::new(PasswordParams::FAST_INSECURE).unwrap()
    }

    #[test]
    fn password_length_is_checked_in_characters() {
        assert!(Password::new("1234567".into()).is_err());
        assert!(Password::new("12345678".into()).is_ok());
        assert!(
            Password::new("é".repeat(128)).is_ok(),
            "256 bytes, 128 chars"
        );
        assert!(Password::new("a".repeat(129)).is_err());
        assert_eq!(
            format!("{:?}", Password::new("hunter2hunter2".into()).unwrap()),
            "Password(***)"
        );
    }

    #[tokio::test]
    async fn hashes_verify_their_password_only() {
        let passwords = passwords();
        let password = Password::new("correct horse".into()).unwrap();
        let hash = passwords.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{hash}");
        assert!(passwords.verify(&password, Some(&hash)).await.unwrap());
        let wrong = Password::offered("correct horsf".into());
        assert!(!passwords.verify(&wrong, Some(&hash)).await.unwrap());
        // Salted: the same password hashes differently each time.
        assert_ne!(passwords.hash(&password).await.unwrap(), hash);
    }

    #[tokio::test]
    async fn unknown_accounts_and_broken_hashes_never_match() {
        let passwords = passwords();
        let password = Password::offered("anything".into());
        assert!(!passwords.verify(&password, None).await.unwrap());
        assert!(
            !passwords
                .verify(&password, Some("not a hash"))
                .await
                .unwrap()
        );
    }

    #[test]
    fn default_parameters_are_owasps() {
        let params = PasswordParams::default();
        assert_eq!(
            (params.memory_kib, params.iterations, params.parallelism),
            (19_456, 2, 1)
        );
        assert!(Passwords::new(params).is_ok());
        assert!(
            Passwords::new(PasswordParams {
                memory_kib: 1,
                ..params
            })
            .is_err()
        );
    }
}
