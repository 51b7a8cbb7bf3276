//! Every limit the gateway enforces, with its default and the reason for it, in one place.

use std::time::Duration;

use crate::config::GatewayConfig;

/// Limits on clients, bodies and instance connections. Built once from the configuration
/// ([`Limits::from_config`]); the fields not in the configuration have fixed defaults chosen
/// below. Tests may adjust any field before calling [`crate::Gateway::build_with_limits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line and headers) read from a client, in bytes; larger
    /// heads get `431 Request Header Fields Too Large` and the connection is closed. Default
    /// 64 KiB: far above real browsers' heads (cookies included, a few KiB) while bounding the
    /// memory one connection can pin. Also hyper's read buffer size (`max_buf_size`), and the
    /// `SETTINGS_MAX_HEADER_LIST_SIZE` of HTTP/2 clients (a larger header list gets 431 and
    /// its stream is reset; the connection lives on).
    pub max_header_bytes: usize,
    /// Time a client has to send a complete request head, in seconds; the connection is closed
    /// otherwise. Default 10 s, against slowloris. hyper starts this clock whenever it waits for
    /// a head, so it is also the idle timeout of a client's keep-alive connection.
    pub header_read_timeout: Duration,
    /// Whether client connections are kept alive between requests. Default on: reconnecting per
    /// request would cost more than the proxying itself.
    pub keep_alive: bool,
    /// Client connections open at once; the accept loop waits for a free slot beyond it.
    /// Default 10 000: below the usual 20 000 file descriptors, leaving room for instance
    /// connections.
    pub max_connections: usize,
    /// Largest request body, in bytes (`gateway.max_body_bytes`, default 1 MiB). A larger
    /// `Content-Length` gets 413 before any instance is contacted; a chunked body is counted
    /// while it streams and the request fails with 413 once it passes the limit.
    pub max_body_bytes: u64,
    /// Largest body the gateway buffers so a failed attempt can be replayed on another
    /// instance, in bytes. Default 64 KiB: covers the shop's JSON bodies; larger or chunked
    /// bodies stream through unbuffered and such requests are never retried.
    pub max_replay_body_bytes: u64,
    /// Longest wait for the next bytes of a request body (`gateway.body_timeout_ms`, default
    /// 10 s); past it the client gets 408. The whole body is also bounded by
    /// `request_timeout`, and a body still arriving then gets 408 as well: a trickling client
    /// is the client's failure, never the instance's.
    pub body_timeout: Duration,
    /// Time to open a TCP connection to an instance (`gateway.connect_timeout_ms`, default 1 s).
    pub connect_timeout: Duration,
    /// Time from receiving a request to receiving the instance's response head
    /// (`gateway.request_timeout_ms`, default 30 s); past it the client gets 504. Also bounds
    /// how long shutdown waits for in-flight requests.
    pub request_timeout: Duration,
    /// Idle keep-alive connections kept per instance. Default 256: enough for the concurrency
    /// of a benchmark with 2 cores, beyond it connections are closed after use.
    pub max_idle_per_instance: usize,
    /// Threads serving client connections, like nginx's worker processes
    /// (`gateway.workers`, default 0: one per CPU the process may use): each has its own
    /// single-threaded runtime, its share of `max_connections` and its own idle connections to
    /// the instances, so a request never leaves the thread that accepted it, and each accepts
    /// from its own `SO_REUSEPORT` socket on the same address. Worker 0 runs on the runtime
    /// [`crate::Gateway::run`] is called on when that runtime is single-threaded (tests,
    /// embedding), on a thread of its own otherwise.
    pub workers: usize,
    /// A WebSocket tunnel idle (no byte either way) this long is closed
    /// (`gateway.websocket_idle_timeout_ms`, default 5 min).
    pub websocket_idle_timeout: Duration,
    /// How long a draining instance keeps its WebSockets (`gateway.drain_timeout_ms`, default
    /// 30 s); its in-flight requests finish whatever this says. A gateway shutting down keeps
    /// its tunnels this long at most for the instances to close them.
    pub drain_timeout: Duration,
    /// Streams one HTTP/2 client connection may have open at once
    /// (`gateway.http2.max_concurrent_streams`, default 128).
    pub h2_max_concurrent_streams: u32,
    /// Streams one HTTP/2 client connection may reset within a second, or before the gateway
    /// took them up, before it gets `GOAWAY` (`gateway.http2.max_reset_streams`, default 100).
    pub h2_max_reset_streams: u32,
    /// An HTTP/2 client connection with no open stream this long gets `GOAWAY`
    /// (`gateway.http2.idle_timeout_ms`, default 60 s).
    pub h2_idle_timeout: Duration,
}

impl Limits {
    /// The limits for `config`, with the fixed defaults documented on each field.
    pub fn from_config(config: &GatewayConfig) -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            keep_alive: true,
            max_connections: 10_000,
            max_body_bytes: config.max_body_bytes,
            max_replay_body_bytes: 64 * 1024,
            body_timeout: Duration::from_millis(config.body_timeout_ms.max(1)),
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            max_idle_per_instance: 256,
            workers: match config.workers {
                0 => std::thread::available_parallelism().map_or(1, usize::from),
                n => n,
            },
            websocket_idle_timeout: Duration::from_millis(config.websocket_idle_timeout_ms.max(1)),
            drain_timeout: Duration::from_millis(config.drain_timeout_ms),
            h2_max_concurrent_streams: config.http2.max_concurrent_streams.max(1),
            h2_max_reset_streams: config.http2.max_reset_streams.max(1),
            h2_idle_timeout: Duration::from_millis(config.http2.idle_timeout_ms.max(1)),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::from_config(&GatewayConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_values_come_from_the_config() {
        let config = GatewayConfig {
            connect_timeout_ms: 250,
            request_timeout_ms: 5000,
            max_body_bytes: 10,
            ..GatewayConfig::default()
        };
        let limits = Limits::from_config(&config);
        assert_eq!(limits.connect_timeout, Duration::from_millis(250));
        assert_eq!(limits.request_timeout, Duration::from_secs(5));
        assert_eq!(limits.max_body_bytes, 10);
        assert_eq!(limits.max_header_bytes, 64 * 1024);
    }
}
