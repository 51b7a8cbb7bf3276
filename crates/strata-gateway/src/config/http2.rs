//! HTTP/2 at the public listener (`[gateway.http2]`): the limits a client's HTTP/2 connection
//! lives under. Applied by [`crate::Limits`] and served by [`crate::http2`].

use serde::{Deserialize, Serialize};
use strata_core::config_section;

config_section! {
    /// HTTP/2 from clients: over TLS when ALPN picks `h2`, over cleartext with prior
    /// knowledge or by `Upgrade: h2c` (`STRATA_GATEWAY_HTTP2_<KEY>`). Request heads are
    /// bounded as for HTTP/1.1 (64 KiB of header list), bodies by `gateway.max_body_bytes`.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct Http2Settings {
        /// Streams (requests) one client connection may have open at once
        /// (`SETTINGS_MAX_CONCURRENT_STREAMS`); a stream beyond it is refused
        /// (`REFUSED_STREAM`), which a client may send again. Default 128, as nginx: a
        /// browser's page opens a few dozen at once, and a connection cannot hold more than
        /// this many of the gateway's request tasks.
        restart max_concurrent_streams: u32 = 128;
            check |n| *n > 0, "must be at least 1",
        /// Streams one client connection may reset (cancel) within a second, and streams it
        /// may reset before the gateway took them up; past either, the connection gets
        /// `GOAWAY` and is closed (rapid reset, CVE-2023-44487: a client that opens and
        /// cancels streams in a loop makes the server work for each while keeping none open).
        /// Default 100: a browser leaving a page cancels its few dozen open streams once.
        restart max_reset_streams: u32 = 100;
            check |n| *n > 0, "must be at least 1",
        /// A client connection with no open stream for this long gets `GOAWAY` and is
        /// closed, in milliseconds. Default 60000: an HTTP/2 client keeps one connection for a
        /// whole visit, and an idle one costs a few KiB; HTTP/1.1's idle limit is the 10 s
        /// head timeout instead, since a browser opens six of those.
        restart idle_timeout_ms: u64 = 60_000;
            check |ms| *ms > 0, "must be at least 1",
    }
}
