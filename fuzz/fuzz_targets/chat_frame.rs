//! Chat client frames (`docs/chat-protocol.md`): a WebSocket text frame read as a
//! `ClientFrame`, and the room ids it names read as `RoomId`, as a connection reads them.
//!
//! Input: the frame's text. Properties:
//! - a frame that parses writes back to JSON that parses to the same frame;
//! - a room id that parses is the text it came from, at most `MAX_ROOM_LEN` bytes of
//!   lower-case letters, digits and `-` (so it is safe inside bus subjects and cache keys), is
//!   a support room exactly when it names a positive customer id, and admits a customer to
//!   that customer's support room only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_chat::protocol::ClientFrame;
use strata_chat::{RoomId, UserRole};
use strata_store::ChatRoomKind;

const MAX_ROOM_LEN: usize = 40;

fn check_room(raw: &str) {
    let Ok(room) = raw.parse::<RoomId>() else {
        return;
    };
    assert_eq!(room.as_str(), raw);
    assert_eq!(room.to_string(), raw);
    assert!(raw.len() <= MAX_ROOM_LEN);
    assert!(
        raw.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "{raw:?} has a character a subject or key cannot take"
    );
    match room.customer() {
        Some(user) => {
            assert!(user > 0);
            assert_eq!(room.kind(), ChatRoomKind::Support);
            assert_eq!(raw, format!("support-{user}"));
            assert!(room.admits(user, UserRole::Customer));
            assert!(!room.admits(user.wrapping_add(1), UserRole::Customer));
        }
        None => {
            assert_eq!(room.kind(), ChatRoomKind::Lobby);
            assert!(raw.starts_with("lobby-"));
            assert!(!room.admits(1, UserRole::Customer));
        }
    }
    assert!(room.admits(1, UserRole::Support) && room.admits(1, UserRole::Admin));
}

fuzz_target!(|input: &[u8]| {
    // Text frames are UTF-8 (the WebSocket layer refuses others before the frame is read).
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    check_room(text);
    let Ok(frame) = serde_json::from_str::<ClientFrame>(text) else {
        return;
    };
    let json = serde_json::to_string(&frame).expect("a frame that cannot be written");
    assert_eq!(
        serde_json::from_str::<ClientFrame>(&json).ok(),
        Some(frame.clone())
    );
    match &frame {
        ClientFrame::Join { room, .. }
        | ClientFrame::Leave { room }
        | ClientFrame::Typing { room }
        | ClientFrame::Read { room, .. }
        | ClientFrame::Send { room, .. } => check_room(room),
        ClientFrame::Auth { .. } | ClientFrame::Ping => {}
    }
});
