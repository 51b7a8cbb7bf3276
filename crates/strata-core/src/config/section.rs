//! The key machinery: a [`Section`] is a struct declared once with [`config_section!`], which
//! generates its fields, its defaults, its key table ([`Section::items`]), the setter every
//! `STRATA_*` variable and flag goes through, and the list of changed keys that need a restart.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::problem::{ConfigError, Problem};

/// Whether a running process applies a new value of a key on reload (SIGHUP), or only at its
/// next start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// A reload applies it.
    Live,
    /// Read at start; a changed value is logged as needing a restart.
    Restart,
}

/// One entry of a section's key table.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The name below the section (`listen`, `health`).
    pub name: &'static str,
    /// The declaration's doc comment, one line per `///` line.
    pub doc: &'static str,
    /// What the entry is.
    pub kind: ItemKind,
}

/// What a key-table entry is.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemKind {
    /// A key set from the file, a `STRATA_*` variable or a flag, with its current value (`None`
    /// when it has no TOML form).
    Key {
        reload: Reload,
        value: Option<toml::Value>,
    },
    /// A key of variables and flags only, with no field of its own (it sets others).
    Setter { reload: Reload },
    /// A value only a file can give (a list of tables), with its current value.
    File { value: Option<toml::Value> },
    /// A nested section (`[gateway.api]`).
    Section(Vec<Item>),
}

/// A configuration section (or a whole configuration, which is a section of sections).
/// Implemented by [`config_section!`](crate::config_section); not meant to be written by hand.
pub trait Section: Default {
    /// The key table: every key and nested section in declaration order, with current values.
    /// Values are shown as they are, secrets included: render docs from defaults only.
    fn items(&self) -> Vec<Item>;

    /// Sets `key` (relative to this section, dotted) from its text form.
    /// `None` when the section has no such key.
    fn set(&mut self, key: &str, value: &str) -> Option<Result<(), String>>;

    /// Appends the keys (below `prefix`) whose reload is [`Reload::Restart`] and whose value
    /// differs between `self` and `new`.
    fn restart_changes(&self, new: &Self, prefix: &str, out: &mut Vec<String>);

    /// Appends the problems of values that parse but make no sense, keys named below `prefix`.
    fn validate(&self, prefix: &str, problems: &mut Vec<Problem>);

    /// Loads defaults, then `file` (if any), then the `STRATA_*` variables of `env`, then
    /// `overrides` (key → value, from flags). Everything is validated before it returns.
    ///
    /// # Errors
    /// Every problem found, each naming its key.
    fn load<E, K, V>(
        file: Option<&Path>,
        env: E,
        overrides: &[(&str, String)],
    ) -> Result<Self, ConfigError>
    where
        Self: Serialize + DeserializeOwned,
        E: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        super::load::load(file, env, overrides)
    }
}

/// `prefix.name`, or `name` at the top.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Collects the problems of one section, each key named below the section's prefix.
pub struct Checks<'a> {
    prefix: &'a str,
    problems: &'a mut Vec<Problem>,
}

impl<'a> Checks<'a> {
    /// Checks of the section at `prefix`, adding to `problems`.
    pub fn new(prefix: &'a str, problems: &'a mut Vec<Problem>) -> Self {
        Self { prefix, problems }
    }

    /// Unless `ok`, records `message` against key `prefix.key`.
    pub fn check(&mut self, ok: bool, key: &str, message: &str) {
        if !ok {
            self.problem(key, message);
        }
    }

    /// Records `message` against key `prefix.key`.
    pub fn problem(&mut self, key: &str, message: &str) {
        self.problems
            .push(Problem::new(&join(self.prefix, key), message));
    }
}

/// The parsers a declaration may name after `=>`; without one a key parses with
/// [`from_str`](parse::from_str).
pub mod parse {
    use super::{FromStr, fmt};

    /// The value's `FromStr`, surrounding blanks ignored; an error quotes the value.
    ///
    /// # Errors
    /// `` `value`: reason ``.
    pub fn from_str<T: FromStr>(value: &str) -> Result<T, String>
    where
        T::Err: fmt::Display,
    {
        value.trim().parse().map_err(|e| format!("`{value}`: {e}"))
    }

    /// The text exactly as given (URLs, paths, secrets that may hold blanks).
    ///
    /// # Errors
    /// Never.
    pub fn verbatim<T: From<String>>(value: &str) -> Result<T, String> {
        Ok(T::from(value.to_owned()))
    }

    /// The text without surrounding blanks (names, tokens).
    ///
    /// # Errors
    /// Never.
    pub fn trimmed<T: From<String>>(value: &str) -> Result<T, String> {
        Ok(T::from(value.trim().to_owned()))
    }
}

/// Applies a declaration's `check` to its field (typed here, so the closure needs no types).
#[doc(hidden)]
pub fn passes<T>(value: &T, check: impl FnOnce(&T) -> bool) -> bool {
    check(value)
}

/// The TOML form of a value, for the key table.
#[doc(hidden)]
pub fn to_value<T: Serialize>(value: &T) -> Option<toml::Value> {
    toml::Value::try_from(value).ok()
}

/// Declares a configuration section once: each field's doc comment, reload behaviour, name,
/// type, default, optionally its parser (after `=>`) and its check (after `; check`: a
/// predicate on the value and the problem reported when it fails). It generates the struct,
/// its `Default` and its [`Section`] implementation, so the `STRATA_*` variables, the
/// unknown-key check, `strata.toml`, the README's table and "needs a restart" all follow from
/// the declaration.
///
/// A field starts with its kind:
/// - `live` / `restart`: a key, applied by a reload or only at start ([`Reload`]);
/// - `section`: a nested section (`[gateway.api]`), itself declared with this macro;
/// - `file`: a value only a file can give (a list of tables), no variable or flag.
///
/// An optional `setters { live name => function, }` block adds keys of variables and flags
/// only, with no field of their own (`function(&mut Self, &str) -> Result<(), String>`); an
/// optional `validate = function;` names the rules that read several keys
/// (`fn(&Self, &mut Checks)`). Problems come in that order: the keys' checks in declaration
/// order, then the section's rules, then its nested sections'.
///
/// ```
/// use strata_core::config_section;
/// use serde::{Deserialize, Serialize};
///
/// config_section! {
///     /// The cache.
///     #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
///     #[serde(default, deny_unknown_fields)]
///     pub struct CacheConfig {
///         /// Time to live of cached reads in seconds.
///         restart ttl_secs: u64 = 60; check |ttl| *ttl > 0, "must be at least 1",
///         /// Namespace of every key.
///         restart prefix: String = "strata".into() => strata_core::config::parse::verbatim,
///     }
/// }
/// ```
#[macro_export]
macro_rules! config_section {
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $kind:ident $field:ident : $ty:ty = $default:expr $(=> $parse:expr)?
                $(; check $check:expr, $message:literal)?
            ),* $(,)?
        }
        $(setters {
            $(
                $(#[doc = $sdoc:literal])*
                $sreload:ident $setter:ident => $sfn:expr
            ),* $(,)?
        })?
        $(validate = $validate:expr;)?
    ) => {
        $(#[$attr])*
        $vis struct $name {
            $(
                $(#[doc = $doc])*
                pub $field: $ty,
            )*
        }

        impl ::core::default::Default for $name {
            fn default() -> Self {
                Self { $($field: $default,)* }
            }
        }

        impl $crate::config::Section for $name {
            fn items(&self) -> ::std::vec::Vec<$crate::config::Item> {
                #[allow(unused_mut)]
                let mut items = ::std::vec![
                    $($crate::config::Item {
                        name: stringify!($field),
                        doc: concat!($($doc, "\n",)*),
                        kind: $crate::__config_item_kind!($kind, self.$field),
                    },)*
                ];
                $($(items.push($crate::config::Item {
                    name: stringify!($setter),
                    doc: concat!($($sdoc, "\n",)*),
                    kind: $crate::config::ItemKind::Setter {
                        reload: $crate::__config_reload!($sreload),
                    },
                });)*)?
                items
            }

            fn set(
                &mut self,
                key: &str,
                value: &str,
            ) -> ::core::option::Option<::core::result::Result<(), ::std::string::String>> {
                $($crate::__config_set!($kind, self, $field, key, value, $($parse)?);)*
                $($(if key == stringify!($setter) {
                    return ::core::option::Option::Some(($sfn)(self, value));
                })*)?
                ::core::option::Option::None
            }

            #[allow(unused_variables)]
            fn restart_changes(
                &self,
                new: &Self,
                prefix: &str,
                out: &mut ::std::vec::Vec<::std::string::String>,
            ) {
                $($crate::__config_restart!($kind, self, new, $field, prefix, out);)*
            }

            #[allow(unused_variables)]
            fn validate(
                &self,
                prefix: &str,
                problems: &mut ::std::vec::Vec<$crate::config::Problem>,
            ) {
                {
                    #[allow(unused_mut)]
                    let mut checks = $crate::config::Checks::new(prefix, problems);
                    $($(checks.check(
                        $crate::config::passes(&self.$field, $check),
                        stringify!($field),
                        $message,
                    );)?)*
                    $(($validate)(self, &mut checks);)?
                }
                $($crate::__config_validate!($kind, self, $field, prefix, problems);)*
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __config_reload {
    (live) => {
        $crate::config::Reload::Live
    };
    (restart) => {
        $crate::config::Reload::Restart
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __config_item_kind {
    (section, $value:expr) => {
        $crate::config::ItemKind::Section($crate::config::Section::items(&$value))
    };
    (file, $value:expr) => {
        $crate::config::ItemKind::File {
            value: $crate::config::to_value(&$value),
        }
    };
    ($reload:ident, $value:expr) => {
        $crate::config::ItemKind::Key {
            reload: $crate::__config_reload!($reload),
            value: $crate::config::to_value(&$value),
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __config_set {
    (section, $self:ident, $field:ident, $key:ident, $value:ident,) => {
        if let ::core::option::Option::Some(rest) = $key
            .strip_prefix(stringify!($field))
            .and_then(|rest| rest.strip_prefix('.'))
        {
            return $crate::config::Section::set(&mut $self.$field, rest, $value);
        }
    };
    (file, $self:ident, $field:ident, $key:ident, $value:ident,) => {};
    ($reload:ident, $self:ident, $field:ident, $key:ident, $value:ident, $($parse:expr)?) => {
        if $key == stringify!($field) {
            return ::core::option::Option::Some(
                $crate::__config_parser!($($parse)?)($value).map(|v| $self.$field = v),
            );
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __config_parser {
    () => {
        $crate::config::parse::from_str
    };
    ($parse:expr) => {
        $parse
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __config_restart {
    (section, $self:ident, $new:ident, $field:ident, $prefix:ident, $out:ident) => {
        $crate::config::Section::restart_changes(
            &$self.$field,
            &$new.$field,
            &$crate::config::join($prefix, stringify!($field)),
            $out,
        )
    };
    (restart, $self:ident, $new:ident, $field:ident, $prefix:ident, $out:ident) => {
        if $self.$field != $new.$field {
            $out.push($crate::config::join($prefix, stringify!($field)));
        }
    };
    ($other:ident, $self:ident, $new:ident, $field:ident, $prefix:ident, $out:ident) => {};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __config_validate {
    (section, $self:ident, $field:ident, $prefix:ident, $problems:ident) => {
        $crate::config::Section::validate(
            &$self.$field,
            &$crate::config::join($prefix, stringify!($field)),
            $problems,
        )
    };
    ($other:ident, $self:ident, $field:ident, $prefix:ident, $problems:ident) => {};
}
