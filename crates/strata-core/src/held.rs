//! Holding a connection's writes while its own task polls it, so that everything one poll
//! produces leaves in one write.
//!
//! The `h2` crate flushes whenever it queues a DATA frame of 256 bytes or more (such a frame
//! is chained rather than copied, and the encoder takes no further frame until the socket has
//! it), so an HTTP/2 connection that answers many streams in one poll would write each
//! response in a system call of its own. [`Held`] stands for the socket instead: what the
//! connection writes, flushes included, while [`Driven`] polls it is kept in the [`Outbox`]
//! and sent in one write (then flushed) as soon as that poll is over. Both ends of strata's
//! HTTP/2 use it: every role's server ([`crate::serve`]), the gateway's front door, and the
//! gateway's connections to instances, which also wait one turn of the worker's loop before
//! they send ([`Outbox::drive_gathering`]).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes a connection holds before it writes them whatever it is doing (a large body streams
/// through, with the socket's back-pressure).
pub const HELD_LIMIT: usize = 64 * 1024;

thread_local! {
    /// The connection ([`Owner`]) whose own task this thread is polling it, if any.
    static POLLING: Cell<*const ()> = const { Cell::new(std::ptr::null()) };
}

/// A connection's identity for holding: its writes are held while [`Driven`] polls it, and
/// whoever else asks (hyper's executor, to run a stream on the connection's task) can tell
/// whether that is happening now. Every clone is the same owner; its address cannot pass to
/// another connection while any clone lives.
#[derive(Clone, Debug, Default)]
pub struct Owner(Arc<()>);

impl Owner {
    fn id(&self) -> *const () {
        Arc::as_ptr(&self.0)
    }

    /// Whether this thread is polling the connection on its own task right now.
    #[must_use]
    pub fn is_polling(&self) -> bool {
        POLLING.get() == self.id()
    }

    /// Runs `f` as the connection's own poll (restored however `f` ends).
    fn polling<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Restore(*const ());
        impl Drop for Restore {
            fn drop(&mut self) {
                POLLING.set(self.0);
            }
        }
        let _restore = Restore(POLLING.replace(self.id()));
        f()
    }
}

/// A connection's socket as its protocol sees it: reads go straight to `R`; what is written
/// while the connection's own task polls it ([`Driven`]) is held, flushes included, until that
/// poll is over. Writes from anywhere else (an upgraded connection's task) go to `W` at once,
/// after what is held.
pub struct Held<R, W> {
    read: R,
    outbox: Arc<Shared<W>>,
    owner: Owner,
}

/// What a [`Held`] socket holds, and the way to send it: [`Outbox::drive`] polls the
/// connection so that its writes are held, and sends them after each poll.
pub struct Outbox<W> {
    shared: Arc<Shared<W>>,
    owner: Owner,
}

impl<R, W> Held<R, W> {
    /// The socket, read through `read` and written through `write` (the two halves of one
    /// connection), and its outbox.
    pub fn new(read: R, write: W) -> (Self, Outbox<W>) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                write,
                bytes: Vec::new(),
                broken: None,
            }),
        });
        let owner = Owner::default();
        let held = Self {
            read,
            outbox: Arc::clone(&shared),
            owner: owner.clone(),
        };
        (held, Outbox { shared, owner })
    }
}

impl<W: AsyncWrite + Unpin> Outbox<W> {
    /// The connection's identity.
    #[must_use]
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// `connection` (served over this outbox's [`Held`] socket), polled so that its writes are
    /// held and sent after each poll.
    pub fn drive<F: Future + Unpin>(self, connection: F) -> Driven<F, W> {
        Driven {
            connection,
            outbox: self,
            done: None,
            gather: false,
            turn: None,
            draining: false,
        }
    }

    /// As [`Outbox::drive`], but what a poll wrote waits for one turn of the runtime's loop
    /// (its sockets polled, the tasks they woke run) and the poll after it before it is sent:
    /// what those tasks hand the connection meanwhile (the requests of every client connection
    /// read in that turn) joins the same write. An idle runtime comes straight back from the
    /// turn (one non-blocking poll of its sockets), so nothing waits for a timer.
    pub fn drive_gathering<F: Future + Unpin>(self, connection: F) -> Driven<F, W> {
        Driven {
            gather: true,
            ..self.drive(connection)
        }
    }

    /// Sends what is held: `Pending` while the socket is full (the task is woken when it
    /// drains), an error once it is broken (what is held is dropped, and the connection's
    /// next write fails with the same error).
    pub fn drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.lock().poll_drain(cx)
    }
}

/// A connection polled by its own task with its writes held ([`Outbox::drive`]): it ends
/// when the connection has and what it wrote is sent (or can never be).
pub struct Driven<F: Future, W> {
    connection: F,
    outbox: Outbox<W>,
    done: Option<F::Output>,
    /// Whether held bytes wait for a turn of the loop ([`Outbox::drive_gathering`]).
    gather: bool,
    /// The turn they wait for, once started.
    turn: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The socket was full at the last drain: the rest goes out as it empties, with no turn.
    draining: bool,
}

impl<F: Future, W> Driven<F, W> {
    /// The connection itself (to start its graceful shutdown).
    pub fn connection(&mut self) -> &mut F {
        &mut self.connection
    }
}

impl<F, W> Future for Driven<F, W>
where
    F: Future + Unpin,
    F::Output: Unpin,
    W: AsyncWrite + Unpin,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        if this.done.is_none() {
            let connection = &mut this.connection;
            if let Poll::Ready(done) = this.outbox.owner.polling(|| Pin::new(connection).poll(cx)) {
                this.done = Some(done);
            }
        }
        // Gathering: what was held waits for a turn of the loop (unless the socket was full,
        // when the rest goes on out as it empties), then for the poll after it.
        if this.gather && !this.draining && this.done.is_none() && this.outbox.shared.lock().holds()
        {
            let turn = this
                .turn
                .get_or_insert_with(|| Box::pin(tokio::task::yield_now()));
            if turn.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.turn = None;
        }
        // What the connection wrote while it was polled goes out in one write. A full socket
        // wakes this task when it drains; a broken one fails the connection's next write,
        // which the connection reports.
        this.draining = this.outbox.drain(cx).is_pending();
        if this.draining {
            return Poll::Pending;
        }
        this.done.take().map_or(Poll::Pending, Poll::Ready)
    }
}

impl<R: AsyncRead + Unpin, W> AsyncRead for Held<R, W> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().read).poll_read(cx, buf)
    }
}

impl<R, W: AsyncWrite + Unpin> AsyncWrite for Held<R, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let owner = self.owner.is_polling();
        let mut pending = self.outbox.lock();
        pending.broken()?;
        let len: usize = slices.iter().map(|s| s.len()).sum();
        // The owner's writes are held while they fit; what does not fit first sends what
        // is held. Writes from another task (an upgraded connection, which may stay open
        // and idle for hours) send what is held and keep no buffer.
        let hold = owner && len <= HELD_LIMIT;
        if !hold || pending.bytes.len() + len > HELD_LIMIT {
            ready!(pending.poll_drain(cx))?;
            if !owner {
                pending.bytes = Vec::new();
            }
        }
        if hold {
            for slice in slices {
                pending.bytes.extend_from_slice(slice);
            }
            return Poll::Ready(Ok(len));
        }
        // From another task, or too large to be worth holding: straight to the socket.
        Pin::new(&mut pending.write).poll_write_vectored(cx, slices)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.owner.is_polling() {
            // Sent, and flushed, once the connection's poll is over.
            return Poll::Ready(self.outbox.lock().broken());
        }
        self.outbox.lock().poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut pending = self.outbox.lock();
        ready!(pending.poll_drain(cx))?;
        Pin::new(&mut pending.write).poll_shutdown(cx)
    }
}

/// The bytes a connection has written and not yet sent, with its write half.
struct Shared<W> {
    pending: Mutex<Pending<W>>,
}

struct Pending<W> {
    write: W,
    bytes: Vec<u8>,
    /// What broke the socket: every later write fails with it, so the protocol ends the
    /// connection rather than answer into a socket that drops everything.
    broken: Option<io::ErrorKind>,
}

impl<W> Shared<W> {
    fn lock(&self) -> MutexGuard<'_, Pending<W>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<W: AsyncWrite + Unpin> Pending<W> {
    fn broken(&self) -> io::Result<()> {
        self.broken.map_or(Ok(()), |kind| Err(kind.into()))
    }

    /// Whether bytes wait to be sent.
    fn holds(&self) -> bool {
        !self.bytes.is_empty()
    }

    /// Writes what is held, then flushes the write half (a TLS stream's records leave there;
    /// a TCP socket's flush does nothing).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.broken()?;
        let mut sent = 0;
        let result = loop {
            if sent == self.bytes.len() {
                break Pin::new(&mut self.write).poll_flush(cx);
            }
            // As `writev`, like hyper's and `h2`'s own writes (counted the same by the kernel).
            let rest = [io::IoSlice::new(&self.bytes[sent..])];
            match Pin::new(&mut self.write).poll_write_vectored(cx, &rest) {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => sent += n,
                Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                Poll::Pending => break Poll::Pending,
            }
        };
        match result {
            // A broken socket: what is held can never leave.
            Poll::Ready(Err(ref e)) => {
                self.broken = Some(e.kind());
                self.bytes = Vec::new();
            }
            _ => {
                self.bytes.drain(..sent);
            }
        }
        if self.bytes.is_empty() && self.bytes.capacity() > HELD_LIMIT {
            self.bytes = Vec::new();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (far, _) = listener.accept().await.unwrap();
        (near, far)
    }

    fn held(near: TcpStream) -> (Held<OwnedReadHalf, OwnedWriteHalf>, Outbox<OwnedWriteHalf>) {
        let (read, write) = near.into_split();
        Held::new(read, write)
    }

    /// Nothing arrives on `far` for a while.
    async fn nothing_arrives(far: &mut TcpStream) {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_millis(50), far.read(&mut buf));
        assert!(read.await.is_err(), "bytes arrived before the drain");
    }

    async fn read_exactly(far: &mut TcpStream, expected: &[u8]) {
        let mut buf = vec![0u8; expected.len()];
        far.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, expected);
    }

    /// `write` run as the connection's own poll would run it.
    async fn as_owner<F: Future>(owner: &Owner, write: F) -> F::Output {
        let mut write = std::pin::pin!(write);
        std::future::poll_fn(|cx| owner.polling(|| write.as_mut().poll(cx))).await
    }

    #[tokio::test]
    async fn the_owners_writes_and_flushes_wait_for_the_drain_and_other_writes_go_at_once() {
        let (near, mut far) = pair().await;
        let (mut held, outbox) = held(near);
        let owner = outbox.owner().clone();
        assert!(!owner.is_polling());

        as_owner(&owner, async {
            assert!(owner.is_polling());
            held.write_all(b"one ").await.unwrap();
            held.flush().await.unwrap();
            held.write_all(b"two ").await.unwrap();
            held.flush().await.unwrap();
        })
        .await;
        assert!(!owner.is_polling());
        nothing_arrives(&mut far).await;
        std::future::poll_fn(|cx| outbox.drain(cx)).await.unwrap();
        read_exactly(&mut far, b"one two ").await;

        // Outside the owner's poll (an upgraded connection's task): at once, after what is held.
        as_owner(&owner, held.write_all(b"held ")).await.unwrap();
        held.write_all(b"direct").await.unwrap();
        read_exactly(&mut far, b"held direct").await;

        // Past the limit a write goes through whoever makes it.
        let big = crate::testkit::patterned_bytes(HELD_LIMIT + 1);
        let expected = big.clone();
        let reader = tokio::spawn(async move {
            read_exactly(&mut far, &expected).await;
            far
        });
        as_owner(&owner, held.write_all(&big)).await.unwrap();
        // A socket that took only part of it leaves the rest held, under the limit.
        std::future::poll_fn(|cx| outbox.drain(cx)).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(10), reader);
        let _far = read.await.expect("all of it arrived").unwrap();
    }

    #[tokio::test]
    async fn a_driven_connection_sends_what_it_wrote_after_each_poll_and_before_it_ends() {
        let (near, mut far) = pair().await;
        let (mut held, outbox) = held(near);
        let (go, went) = tokio::sync::oneshot::channel::<()>();
        // A "connection" that writes twice and flushes, waits, then writes once more and ends.
        let connection = Box::pin(async move {
            held.write_all(b"first ").await?;
            held.flush().await?;
            held.write_all(b"second ").await?;
            held.flush().await?;
            let _ = went.await;
            held.write_all(b"last").await?;
            io::Result::Ok(())
        });
        let driven = tokio::spawn(outbox.drive(connection));
        read_exactly(&mut far, b"first second ").await;
        go.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), driven)
            .await
            .expect("ended")
            .unwrap()
            .unwrap();
        read_exactly(&mut far, b"last").await;
    }

    /// A write half that records each write it is given.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.lock().unwrap().push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Writes sent by a "connection" that writes and flushes every message it is handed,
    /// driven with `gather` or not: `one` is handed over before the connection's first poll,
    /// `two` by another task in the turn after it.
    async fn writes_of_two_messages(gather: bool) -> Vec<Vec<u8>> {
        let recorder = Recorder::default();
        let (mut held, outbox) = Held::new(tokio::io::empty(), recorder.clone());
        let (messages, mut inbox) = tokio::sync::mpsc::unbounded_channel::<&'static [u8]>();
        let connection = Box::pin(async move {
            while let Some(message) = inbox.recv().await {
                held.write_all(message).await?;
                held.flush().await?;
            }
            io::Result::Ok(())
        });
        let driven = if gather {
            tokio::spawn(outbox.drive_gathering(connection))
        } else {
            tokio::spawn(outbox.drive(connection))
        };
        messages.send(b"one ").unwrap();
        // The connection's task runs (and, gathering, waits for the loop's turn); this test
        // runs again after that turn, before the connection's task does.
        tokio::task::yield_now().await;
        messages.send(b"two").unwrap();
        drop(messages);
        tokio::time::timeout(Duration::from_secs(10), driven)
            .await
            .expect("ended")
            .unwrap()
            .unwrap();
        recorder.0.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn gathering_sends_what_other_tasks_hand_over_in_the_next_turn_in_the_same_write() {
        assert_eq!(
            writes_of_two_messages(true).await,
            vec![b"one two".to_vec()]
        );
        // Without gathering, each poll's writes leave at its end.
        assert_eq!(
            writes_of_two_messages(false).await,
            vec![b"one ".to_vec(), b"two".to_vec()]
        );
    }

    #[tokio::test]
    async fn a_broken_socket_fails_the_owners_later_writes() {
        let (near, far) = pair().await;
        let (mut held, outbox) = held(near);
        let owner = outbox.owner().clone();
        drop(far);
        // The first writes to a closed peer may still be accepted; its reset breaks a later
        // one (bounded: 200 tries, 10 ms apart).
        let mut broke = false;
        for _ in 0..200 {
            if as_owner(&owner, held.write_all(b"into nothing"))
                .await
                .is_err()
            {
                broke = true;
                break;
            }
            if std::future::poll_fn(|cx| outbox.drain(cx)).await.is_err() {
                // What was held is dropped; the owner's next write and flush fail.
                as_owner(&owner, async {
                    assert!(held.write_all(b"more").await.is_err());
                    assert!(held.flush().await.is_err());
                })
                .await;
                broke = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(broke, "writing to a closed peer never failed");
    }
}
