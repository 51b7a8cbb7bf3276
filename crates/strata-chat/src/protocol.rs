//! The wire protocol: JSON text frames in both directions, tagged by `type`, and the close
//! codes. `docs/chat-protocol.md` is the reference for clients; this module is its source.

use serde::{Deserialize, Serialize};

/// Close codes the server uses (RFC 6455 leaves 4000–4999 to applications).
pub mod close {
    /// The token is missing, invalid or expired. Do not reconnect with the same token.
    pub const UNAUTHORIZED: u16 = 4001;
    /// Policy: too many frames too fast (rate limit) or repeated invalid frames.
    pub const POLICY: u16 = 4008;
    /// The client did not read fast enough: its outgoing buffer filled up. Reconnect and
    /// resume from the last id seen.
    pub const TOO_SLOW: u16 = 4009;
    /// The instance is draining (shutdown or gateway drain): reconnect at once (the gateway
    /// picks another instance) and resume.
    pub const RECONNECT: u16 = 4012;
    /// No frame (not even a pong) for two heartbeat intervals.
    pub const HEARTBEAT_TIMEOUT: u16 = 4013;
    /// A frame larger than the instance accepts (RFC 6455's "message too big").
    pub const TOO_BIG: u16 = 1009;
}

/// The shortest time between two `typing` notices of one connection in one room that are
/// relayed: a notice says "typing" for a few seconds, so one a second is as good as one a key.
pub const TYPING_INTERVAL_MS: u64 = 1000;

/// A frame from the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Authenticates (when the token was not in the URL). Must be the first frame.
    Auth {
        /// The JWT from `POST /api/v1/sessions`.
        token: String,
    },
    /// Enters a room. `after`: the last message id already seen (resume); absent means "only
    /// new messages".
    Join {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<i64>,
    },
    /// Leaves a room (stops its messages on this connection).
    Leave { room: String },
    /// Sends a message. `client_id` (1 to 64 characters) is the client's own id for it:
    /// sending it again (after a lost acknowledgement) stores nothing new.
    Send {
        room: String,
        client_id: String,
        body: String,
    },
    /// "I am typing" in a room; relayed to the room's other members, not stored. At most one
    /// per room every [`TYPING_INTERVAL_MS`] is relayed; the others are dropped silently.
    Typing { room: String },
    /// "I have read the room up to message `id`": moves this user's read marker (stored; the
    /// agents' room list counts unread messages from it). Never moves back.
    Read { room: String, id: i64 },
    /// Application-level ping (answered by `pong`); WebSocket pings work too.
    Ping,
}

/// A frame from the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Authenticated: who the server thinks you are, and its heartbeat interval.
    Ready {
        user: i64,
        instance: String,
        heartbeat_ms: u64,
    },
    /// Joined a room; messages with ids above `after` follow, in order.
    Joined { room: String, after: i64 },
    /// Left a room.
    Left { room: String },
    /// A message of a room. `id` is gap-free and increasing per room. `sender_name` is the
    /// sender's display name (empty when no account has the sender's id).
    Message {
        room: String,
        id: i64,
        sender: i64,
        #[serde(default)]
        sender_name: String,
        client_id: String,
        body: String,
        sent_at: String,
    },
    /// Your message is stored (`duplicate`: it had been stored before under this client id).
    Ack {
        room: String,
        client_id: String,
        id: i64,
        duplicate: bool,
    },
    /// Someone is typing.
    Typing { room: String, user: i64 },
    /// A member of a room went online or offline.
    Presence {
        room: String,
        user: i64,
        online: bool,
    },
    /// A new message in a support room, sent to the connections that watch them all
    /// (`watch=support` on the URL: the agents' console), whether they joined it or not: the
    /// fields of `message`, so a room list can count it and show it without asking.
    Activity {
        room: String,
        id: i64,
        sender: i64,
        #[serde(default)]
        sender_name: String,
        body: String,
        sent_at: String,
    },
    /// Answer to `ping`.
    Pong,
    /// Something was wrong with a frame; the connection stays open. `client_id` names the
    /// message it concerns, when it concerns one.
    Error {
        code: String,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
}

impl ServerFrame {
    /// An error frame.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self::Error {
            code: code.to_owned(),
            message: message.into(),
            client_id: None,
        }
    }

    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        // Serializing these plain enums cannot fail; an empty object is a safe fallback.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_documented_shape() {
        let frame: ClientFrame =
            serde_json::from_str(r#"{"type":"join","room":"lobby-a","after":3}"#).unwrap();
        assert_eq!(
            frame,
            ClientFrame::Join {
                room: "lobby-a".into(),
                after: Some(3)
            }
        );
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"nope"}"#).is_err());
        let ack = ServerFrame::Ack {
            room: "lobby-a".into(),
            client_id: "c1".into(),
            id: 9,
            duplicate: false,
        };
        assert_eq!(
            ack.to_json(),
            r#"{"type":"ack","room":"lobby-a","client_id":"c1","id":9,"duplicate":false}"#
        );
        let activity = ServerFrame::Activity {
            room: "support-3".into(),
            id: 4,
            sender: 3,
            sender_name: "Ann".into(),
            body: "hi".into(),
            sent_at: "2026-12-06T12:00:00Z".into(),
        };
        assert_eq!(
            activity.to_json(),
            r#"{"type":"activity","room":"support-3","id":4,"sender":3,"sender_name":"Ann","body":"hi","sent_at":"2026-12-06T12:00:00Z"}"#
        );
    }
}
