//! [`RoomId`]: a room's name, parsed once at the boundary, and who may enter it.
//!
//! Two kinds of room exist: `support-<user id>`, one customer's support room (that customer
//! and any support agent or admin), and `lobby-<name>`, an agents' lobby (support and admin
//! only; `name` is 1 to 32 lowercase letters, digits or `-`). Anything else is not a room.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use strata_store::{ChatRoomKind, UserRole};

/// The longest room id accepted.
pub const MAX_ROOM_LEN: usize = 40;

/// A valid room id. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(Arc<str>);

/// Why a string is not a room id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown room: {0}")]
pub struct UnknownRoom(pub &'static str);

impl RoomId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared text, for maps keyed by room.
    pub fn shared(&self) -> Arc<str> {
        self.0.clone()
    }

    /// What the room is for.
    pub fn kind(&self) -> ChatRoomKind {
        if self.0.starts_with("support-") {
            ChatRoomKind::Support
        } else {
            ChatRoomKind::Lobby
        }
    }

    /// The customer a support room belongs to.
    pub fn customer(&self) -> Option<i64> {
        self.0.strip_prefix("support-")?.parse().ok()
    }

    /// True when a user with `role` and id `user` may join (and so read and write) the room.
    pub fn admits(&self, user: i64, role: UserRole) -> bool {
        match role {
            UserRole::Support | UserRole::Admin => true,
            UserRole::Customer => self.customer() == Some(user),
        }
    }
}

impl FromStr for RoomId {
    type Err = UnknownRoom;

    fn from_str(raw: &str) -> Result<Self, UnknownRoom> {
        if raw.len() > MAX_ROOM_LEN {
            return Err(UnknownRoom("room id too long"));
        }
        if let Some(user) = raw.strip_prefix("support-") {
            let ok = !user.is_empty()
                && !user.starts_with('0')
                && user.len() <= 19
                && user.bytes().all(|b| b.is_ascii_digit())
                && user.parse::<i64>().is_ok_and(|id| id > 0);
            return if ok {
                Ok(Self(Arc::from(raw)))
            } else {
                Err(UnknownRoom("a support room is `support-<user id>`"))
            };
        }
        if let Some(name) = raw.strip_prefix("lobby-") {
            let ok = (1..=32).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            return if ok {
                Ok(Self(Arc::from(raw)))
            } else {
                Err(UnknownRoom(
                    "a lobby is `lobby-<name>`, name of lowercase letters, digits or `-`",
                ))
            };
        }
        Err(UnknownRoom(
            "rooms are `support-<user id>` or `lobby-<name>`",
        ))
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_parse_and_admit_the_right_people() {
        let support: RoomId = "support-42".parse().unwrap();
        assert_eq!(support.kind(), ChatRoomKind::Support);
        assert!(support.admits(42, UserRole::Customer));
        assert!(!support.admits(43, UserRole::Customer));
        assert!(support.admits(7, UserRole::Support));
        let lobby: RoomId = "lobby-night-shift".parse().unwrap();
        assert_eq!(lobby.kind(), ChatRoomKind::Lobby);
        assert!(!lobby.admits(1, UserRole::Customer));
        assert!(lobby.admits(1, UserRole::Admin));
        for bad in [
            "",
            "support-",
            "support-0",
            "support-01",
            "support--1",
            "support-x",
            "support-99999999999999999999",
            "lobby-",
            "lobby-A",
            "lobby-a.b",
            "lobby-a b",
            "general",
            "lobby-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(bad.parse::<RoomId>().is_err(), "{bad:?} accepted");
        }
    }
}
