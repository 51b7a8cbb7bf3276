//! Which pool a request path goes to.

/// The routes of the design: `/api/v1/chat/` goes to the chat pool, every other path to api.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Api,
    Chat,
}

impl Route {
    /// Every route; a route's position here indexes per-route tables.
    pub const ALL: [Self; 2] = [Self::Api, Self::Chat];

    /// Path prefix of the chat route (WebSocket, history, presence).
    pub const CHAT_PREFIX: &'static str = "/api/v1/chat/";

    /// The route of a request path.
    pub fn for_path(path: &str) -> Self {
        if path.starts_with(Self::CHAT_PREFIX) {
            Self::Chat
        } else {
            Self::Api
        }
    }

    /// The pool this route sends requests to.
    pub fn pool_name(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Chat => "chat",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_paths_go_to_chat_and_everything_else_to_api() {
        assert_eq!(Route::for_path("/api/v1/chat/ws"), Route::Chat);
        assert_eq!(
            Route::for_path("/api/v1/chat/rooms/1/messages"),
            Route::Chat
        );
        assert_eq!(Route::for_path("/api/v1/chat"), Route::Api);
        assert_eq!(Route::for_path("/api/v1/products"), Route::Api);
        assert_eq!(Route::for_path("/"), Route::Api);
        assert_eq!(Route::for_path("/docs"), Route::Api);
    }
}
