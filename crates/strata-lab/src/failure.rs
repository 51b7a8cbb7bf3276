//! The kinds of failed requests, and the line between "never sent" and "sent but unanswered".
//!
//! That line matters when judging a graceful shutdown: a server that stops accepting is allowed
//! to refuse new connections, but must answer every request it has taken. The client cannot see
//! inside the server, so it draws the line at the wire: a request counts as sent once it has
//! been written on a connection not known to be closed. A connection the server closed while
//! it was idle (seen before writing) is replaced without a failure; a write the socket refuses
//! (the peer had gone) is [`Failure::NotSent`]; every failure after a written request is
//! [`Failure::was_sent`].

/// Why a request got no (complete) response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// No TCP connection could be opened (refused, unreachable). Never sent.
    Connect,
    /// Opening the TCP connection took longer than the connect timeout. Never sent.
    ConnectTimeout,
    /// The keep-alive connection was closed by the server before the request was written
    /// (the write was refused). Never sent.
    NotSent,
    /// The request was written and the server reset the connection (RST) before a response.
    Reset,
    /// The request was written and the server closed the connection (EOF) before a complete
    /// response head.
    Closed,
    /// No complete response within the request timeout (the request may or may not have left).
    Timeout,
    /// The response head arrived but its body failed midway.
    Body,
    /// The server answered with something that is not HTTP/1.x.
    Protocol,
    /// Any other error after the request was written.
    Io,
}

impl Failure {
    /// Every kind, in report order.
    pub const ALL: [Failure; 9] = [
        Failure::Connect,
        Failure::ConnectTimeout,
        Failure::NotSent,
        Failure::Reset,
        Failure::Closed,
        Failure::Timeout,
        Failure::Body,
        Failure::Protocol,
        Failure::Io,
    ];

    /// The key used in reports (`connect`, `reset`, `timeout`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::ConnectTimeout => "connect_timeout",
            Failure::NotSent => "not_sent",
            Failure::Reset => "reset",
            Failure::Closed => "closed",
            Failure::Timeout => "timeout",
            Failure::Body => "body",
            Failure::Protocol => "protocol",
            Failure::Io => "io",
        }
    }

    /// Parses a report key back into its kind.
    pub fn from_key(key: &str) -> Option<Failure> {
        Failure::ALL.into_iter().find(|f| f.as_str() == key)
    }

    /// True when the request had been written on a connection before it failed (see the module
    /// docs); false when it never left the client. A timeout counts as sent: the client cannot
    /// tell, and counting it keeps the judgement conservative.
    pub fn was_sent(self) -> bool {
        !matches!(
            self,
            Failure::Connect | Failure::ConnectTimeout | Failure::NotSent
        )
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_are_unique() {
        for (i, failure) in Failure::ALL.into_iter().enumerate() {
            assert_eq!(failure.index(), i);
            assert_eq!(Failure::from_key(failure.as_str()), Some(failure));
        }
        assert_eq!(Failure::from_key("nope"), None);
    }

    #[test]
    fn only_connection_level_refusals_count_as_unsent() {
        let unsent: Vec<_> = Failure::ALL.into_iter().filter(|f| !f.was_sent()).collect();
        assert_eq!(
            unsent,
            [Failure::Connect, Failure::ConnectTimeout, Failure::NotSent]
        );
    }
}
