//! The kinds of failed requests, and the line between "never sent" and "sent but unanswered".
//!
//! That line matters when judging a graceful shutdown: a server that stops accepting is allowed
//! to refuse new connections, but must answer every request it has taken. The client cannot see
//! inside the server, so it draws the line at the wire: a request counts as sent once hyper has
//! serialized it onto an open connection. hyper hands an unsent request back
//! (`TrySendError::take_message`) when the connection was already known to be closed; every
//! failure after that point is [`Failure::was_sent`].

use std::io;

/// Why a request got no (complete) response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// No TCP connection could be opened (refused, unreachable). Never sent.
    Connect,
    /// Opening the TCP connection took longer than the connect timeout. Never sent.
    ConnectTimeout,
    /// The keep-alive connection was closed by the server before the request was written
    /// (hyper gave the request back). Never sent.
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
    /// The server answered with something that is not HTTP/1.1.
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

    /// Classifies an error hyper returned after the request was handed to the connection.
    pub(crate) fn after_send(error: &hyper::Error) -> Failure {
        if error.is_incomplete_message() {
            return Failure::Closed;
        }
        if error.is_parse() || error.is_parse_status() || error.is_parse_too_large() {
            return Failure::Protocol;
        }
        if error.is_timeout() {
            return Failure::Timeout;
        }
        match io_error_kind(error) {
            Some(
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe,
            ) => Failure::Reset,
            Some(io::ErrorKind::UnexpectedEof) => Failure::Closed,
            _ => Failure::Io,
        }
    }
}

/// The kind of the first I/O error in `error`'s source chain.
fn io_error_kind(error: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        source = e.source();
    }
    None
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
