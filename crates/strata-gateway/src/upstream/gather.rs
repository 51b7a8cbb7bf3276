//! The socket of an h2c connection to an instance, its writes gathered for one turn of the
//! worker's loop.
//!
//! The `h2` driver flushes as soon as it is polled with frames queued, so under load a
//! connection writes the request of each client connection that was read in a turn of the
//! loop in a write of its own, and the instance reads and answers them one by one. Here a
//! flush with bytes waiting is put off once, until the worker has polled its sockets again
//! and run the tasks that woke (`tokio::task::yield_now`): the requests of every client
//! connection that became readable meanwhile join the same write. An idle worker polls its
//! sockets without waiting and comes straight back, so a lone request is delayed by one
//! non-blocking poll, not by a timer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes gathered past which a write goes out at once (they fill a write on their own).
const GATHER_LIMIT: usize = 64 * 1024;

/// `io` with its writes gathered (see the module's documentation).
pub struct Gathered<T> {
    io: T,
    buf: Vec<u8>,
    /// The turn a flush waits for, once started.
    turn: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The turn is over and what was gathered is going out (the socket was full): the next
    /// flush goes on writing without waiting for another turn.
    draining: bool,
}

impl<T> Gathered<T> {
    pub fn new(io: T) -> Self {
        Self {
            io,
            buf: Vec::with_capacity(16 * 1024),
            turn: None,
            draining: false,
        }
    }
}

impl<T: AsyncWrite + Unpin> Gathered<T> {
    /// Writes out everything gathered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut start = 0;
        while start < self.buf.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.buf[start..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => start += n,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    self.buf.drain(..start);
                    return Poll::Pending;
                }
            }
        }
        self.buf.clear();
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Gathered<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Gathered<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.buf.len() + data.len() > GATHER_LIMIT {
            ready!(this.poll_drain(cx))?;
            if data.len() > GATHER_LIMIT {
                return Pin::new(&mut this.io).poll_write(cx, data);
            }
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.buf.is_empty() {
            if !this.draining {
                let turn = this
                    .turn
                    .get_or_insert_with(|| Box::pin(tokio::task::yield_now()));
                ready!(turn.as_mut().poll(cx));
                this.turn = None;
                this.draining = true;
            }
            ready!(this.poll_drain(cx))?;
            this.draining = false;
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn writes_before_a_flush_go_out_in_one_write_after_a_turn() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut gathered = Gathered::new(near);
        gathered.write_all(b"HEADERS one ").await.unwrap();
        gathered.write_all(b"HEADERS two").await.unwrap();
        // Nothing is written before the flush.
        let mut buf = [0u8; 64];
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), far.read(&mut buf));
        assert!(early.await.is_err(), "bytes went out before the flush");
        gathered.flush().await.unwrap();
        let n = far.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"HEADERS one HEADERS two");
        assert!(gathered.buf.is_empty() && gathered.turn.is_none() && !gathered.draining);
    }

    #[tokio::test]
    async fn a_write_past_the_limit_drains_what_was_gathered_first_and_shutdown_drains_too() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut gathered = Gathered::new(near);
        gathered.write_all(b"first").await.unwrap();
        let big = vec![7u8; GATHER_LIMIT + 1];
        gathered.write_all(&big).await.unwrap();
        gathered.write_all(b"last").await.unwrap();
        gathered.shutdown().await.unwrap();
        let mut all = Vec::new();
        far.read_to_end(&mut all).await.unwrap();
        assert_eq!(all.len(), 5 + big.len() + 4);
        assert_eq!(&all[..5], b"first");
        assert!(all[5..5 + big.len()].iter().all(|&b| b == 7));
        assert_eq!(&all[5 + big.len()..], b"last");
    }

    #[tokio::test]
    async fn a_flush_into_a_full_socket_goes_on_writing_as_the_peer_reads() {
        // The pipe holds 16 bytes: the gathered 300 go out over many writes of one flush.
        let (near, mut far) = tokio::io::duplex(16);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            far.read_to_end(&mut all).await.unwrap();
            all
        });
        let mut gathered = Gathered::new(near);
        let data: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
        gathered.write_all(&data).await.unwrap();
        gathered.flush().await.unwrap();
        assert!(gathered.buf.is_empty() && !gathered.draining);
        gathered.shutdown().await.unwrap();
        drop(gathered);
        assert_eq!(reader.await.unwrap(), data);
    }
}
