//! The durable half of local carts: an append-only log of checksummed binary records written
//! by one thread that group-commits (one `fsync` per batch, every waiting change acknowledged
//! only after the `fsync` that covers it), periodic snapshots that replace the log, and the
//! recovery that rebuilds the carts at start-up (snapshot, then the logs after it).
//!
//! # Files (in the instance's own directory)
//! - `log.<generation>`: records appended since the snapshot of that generation was begun.
//! - `snapshot`: every cart as of some moment after `log.<generation>` was opened, written
//!   to `snapshot.tmp`, synced and renamed over the old one (a crash leaves either whole).
//!
//! A record states the *whole new state* of the carts it names (no deltas), so replaying a
//! record twice, or replaying one the snapshot already holds, changes nothing: that is what
//! lets a snapshot be read from the live map while writers go on (see `LocalCarts`).
//!
//! # Record format (little endian)
//! `len: u32, crc32(payload): u32, payload`; payload: `count: u16`, then `count` entries of
//! `owner tag: u8 (1 user, 2 anonymous), owner: 16 bytes, lines: u8`, then per line
//! `product_id: i64, quantity: u8, added_at (unix ns): i64`; tags 3 and 4 (user, anonymous)
//! delete the cart (an empty cart is kept: an anonymous cookie goes on naming it). A short or mis-checksummed record ends a log (the torn tail of a crash: nothing
//! after it was acknowledged); in a snapshot it is an error, since snapshots are renamed
//! into place only once complete.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

/// The snapshot's file name.
pub(crate) const SNAPSHOT: &str = "snapshot";
/// The first bytes of a snapshot (and the format's version).
const SNAPSHOT_MAGIC: &[u8; 8] = b"STRCART1";
/// Frame header: length and checksum.
const HEADER: usize = 8;
/// Bytes of one line on disk.
const LINE_BYTES: usize = 17;
/// Bytes of an entry's head (owner tag, owner, line count).
const ENTRY_HEAD: usize = 18;
/// The largest payload accepted when reading: far above any real record (a snapshot frame
/// holds at most [`SNAPSHOT_FRAME_CARTS`] carts of at most 255 lines).
const MAX_PAYLOAD: usize = 64 << 20;
/// Carts per snapshot frame: amortizes the frame header without large frames.
const SNAPSHOT_FRAME_CARTS: usize = 256;

/// Whose cart, as kept in memory and on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum OwnerKey {
    /// A signed-in user.
    User(i64),
    /// An anonymous visitor's cookie token (32 hex digits, kept as its 128 bits).
    Anonymous(u128),
}

/// One cart line as kept: the catalog data is joined when the cart is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    /// The product.
    pub product_id: i64,
    /// Units, `1..=99`.
    pub quantity: u8,
    /// When the line was first added, in unix nanoseconds.
    pub added_at: i64,
}

/// Appends the frame of a record naming `entries` to `out`.
pub(crate) fn encode_record<'a>(
    entries: impl IntoIterator<Item = (OwnerKey, Option<&'a [Line]>)>,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.extend_from_slice(&[0, 0]);
    let mut count: u16 = 0;
    for (owner, lines) in entries {
        count += 1;
        let deleted = if lines.is_none() { 2 } else { 0 };
        let lines = lines.unwrap_or_default();
        match owner {
            OwnerKey::User(id) => {
                out.push(1 + deleted);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&[0; 8]);
            }
            OwnerKey::Anonymous(token) => {
                out.push(2 + deleted);
                out.extend_from_slice(&token.to_le_bytes());
            }
        }
        // Carts hold at most 50 lines (`MAX_CART_LINES`).
        out.push(u8::try_from(lines.len()).unwrap_or(u8::MAX));
        for line in lines.iter().take(usize::from(u8::MAX)) {
            out.extend_from_slice(&line.product_id.to_le_bytes());
            out.push(line.quantity);
            out.extend_from_slice(&line.added_at.to_le_bytes());
        }
    }
    let payload_start = start + HEADER;
    out[payload_start..payload_start + 2].copy_from_slice(&count.to_le_bytes());
    let payload = &out[payload_start..];
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Calls `apply` for each entry of a checked payload; `false` when the payload is malformed.
fn decode_payload(payload: &[u8], apply: &mut impl FnMut(OwnerKey, Option<Vec<Line>>)) -> bool {
    let Some((count, mut rest)) = payload.split_first_chunk::<2>() else {
        return false;
    };
    for _ in 0..u16::from_le_bytes(*count) {
        let Some((head, tail)) = rest.split_first_chunk::<ENTRY_HEAD>() else {
            return false;
        };
        let owner = match head[0] {
            1 | 3 => OwnerKey::User(i64::from_le_bytes(array(&head[1..9]))),
            2 | 4 => OwnerKey::Anonymous(u128::from_le_bytes(array(&head[1..17]))),
            _ => return false,
        };
        let deleted = head[0] > 2;
        let n = usize::from(head[17]);
        if tail.len() < n * LINE_BYTES {
            return false;
        }
        let (body, tail) = tail.split_at(n * LINE_BYTES);
        let lines = body
            .chunks_exact(LINE_BYTES)
            .map(|b| Line {
                product_id: i64::from_le_bytes(array(&b[0..8])),
                quantity: b[8],
                added_at: i64::from_le_bytes(array(&b[9..17])),
            })
            .collect();
        apply(owner, (!deleted).then_some(lines));
        rest = tail;
    }
    rest.is_empty()
}

/// A fixed-size array from a slice of exactly that size (the callers slice exact ranges).
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// Applies the records of `bytes` in order, stopping at the first torn or corrupt one.
/// Returns how many bytes were whole records.
fn replay_frames(bytes: &[u8], apply: &mut impl FnMut(OwnerKey, Option<Vec<Line>>)) -> usize {
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes(array(&header[0..4])) as usize;
        let crc = u32::from_le_bytes(array(&header[4..8]));
        if len > MAX_PAYLOAD {
            break;
        }
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        // A payload that checks but does not parse is a bug of the writer: stop there too.
        let mut entries = Vec::new();
        if !decode_payload(payload, &mut |o, l| entries.push((o, l))) {
            break;
        }
        for (owner, lines) in entries {
            apply(owner, lines);
        }
        at += HEADER + len;
    }
    at
}

/// What recovery found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// The generation of the log to open next (above every log on disk).
    pub next_generation: u64,
    /// Records replayed from logs.
    pub log_bytes: u64,
    /// Whether a log ended in a torn or corrupt record (ignored).
    pub torn: bool,
}

fn log_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("log.{generation}"))
}

/// The generations of the `log.<n>` files in `dir`, ascending.
fn log_generations(dir: &Path) -> io::Result<Vec<u64>> {
    let mut generations = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(Ok(n)) = name
            .to_str()
            .and_then(|n| n.strip_prefix("log."))
            .map(str::parse)
        {
            generations.push(n);
        }
    }
    generations.sort_unstable();
    Ok(generations)
}

/// Rebuilds the carts of `dir` (created when missing): the snapshot's, then the records of
/// every log from the snapshot's generation on, each passed to `apply` in order (a later
/// state of a cart replaces an earlier one).
///
/// # Errors
/// When the directory cannot be read or the snapshot is corrupt.
pub(crate) fn recover(
    dir: &Path,
    mut apply: impl FnMut(OwnerKey, Option<Vec<Line>>),
) -> io::Result<Recovered> {
    fs::create_dir_all(dir)?;
    let mut generation = 0;
    match fs::read(dir.join(SNAPSHOT)) {
        Ok(bytes) => {
            let corrupt = || io::Error::new(io::ErrorKind::InvalidData, "corrupt cart snapshot");
            let body = bytes
                .strip_prefix(SNAPSHOT_MAGIC.as_slice())
                .ok_or_else(corrupt)?;
            let (gen_bytes, frames) = body.split_first_chunk::<8>().ok_or_else(corrupt)?;
            generation = u64::from_le_bytes(*gen_bytes);
            if replay_frames(frames, &mut apply) != frames.len() {
                return Err(corrupt());
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut recovered = Recovered {
        next_generation: generation,
        log_bytes: 0,
        torn: false,
    };
    for n in log_generations(dir)? {
        if n < generation {
            // Covered by the snapshot: left over from a crash before its clean-up.
            fs::remove_file(log_path(dir, n))?;
            continue;
        }
        let bytes = fs::read(log_path(dir, n))?;
        let whole = replay_frames(&bytes, &mut apply);
        recovered.torn |= whole != bytes.len();
        recovered.log_bytes += whole as u64;
        recovered.next_generation = n + 1;
    }
    Ok(recovered)
}

/// Writes a snapshot of generation `generation`: [`SnapshotWriter::push`] every cart, then
/// [`SnapshotWriter::finish`].
pub(crate) struct SnapshotWriter {
    dir: PathBuf,
    generation: u64,
    file: BufWriter<File>,
    frame: Vec<u8>,
    pending: Vec<(OwnerKey, Vec<Line>)>,
    carts: u64,
}

impl SnapshotWriter {
    /// Starts `snapshot.tmp` in `dir`.
    ///
    /// # Errors
    /// When the file cannot be created.
    pub(crate) fn create(dir: &Path, generation: u64) -> io::Result<Self> {
        let mut file = BufWriter::with_capacity(1 << 20, File::create(dir.join("snapshot.tmp"))?);
        file.write_all(SNAPSHOT_MAGIC)?;
        file.write_all(&generation.to_le_bytes())?;
        Ok(Self {
            dir: dir.to_owned(),
            generation,
            file,
            frame: Vec::new(),
            pending: Vec::with_capacity(SNAPSHOT_FRAME_CARTS),
            carts: 0,
        })
    }

    /// Adds one cart.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub(crate) fn push(&mut self, owner: OwnerKey, lines: Vec<Line>) -> io::Result<()> {
        self.pending.push((owner, lines));
        self.carts += 1;
        if self.pending.len() >= SNAPSHOT_FRAME_CARTS {
            self.flush_frame()?;
        }
        Ok(())
    }

    fn flush_frame(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.frame.clear();
        encode_record(
            self.pending.iter().map(|(o, l)| (*o, Some(l.as_slice()))),
            &mut self.frame,
        );
        self.pending.clear();
        self.file.write_all(&self.frame)
    }

    /// Syncs the snapshot, renames it into place, and removes the logs it covers (those
    /// before its generation). Returns the number of carts written.
    ///
    /// # Errors
    /// When a step fails; the previous snapshot and the logs then stay as they were.
    pub(crate) fn finish(mut self) -> io::Result<u64> {
        self.flush_frame()?;
        let file = self
            .file
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        drop(file);
        fs::rename(self.dir.join("snapshot.tmp"), self.dir.join(SNAPSHOT))?;
        sync_dir(&self.dir)?;
        for n in log_generations(&self.dir)? {
            if n < self.generation {
                fs::remove_file(log_path(&self.dir, n))?;
            }
        }
        Ok(self.carts)
    }
}

/// Makes a rename or a new file in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Why a change was not made durable.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum JournalError {
    /// Writing or syncing the log failed; the journal refuses every later change, since a
    /// record after a failed one might not be replayed.
    #[error("the cart log cannot be written: {0}")]
    Failed(String),
    /// The writer thread is gone (the instance is stopping).
    #[error("the cart log is closed")]
    Closed,
}

/// What the writer thread is asked to do.
enum Command {
    /// Append a record frame; `done` is answered after the `fsync` that covers it.
    Append {
        frame: Vec<u8>,
        done: oneshot::Sender<Result<(), JournalError>>,
    },
    /// Commit what is pending and continue in a new log; answered with its generation.
    Rotate {
        done: oneshot::Sender<Result<u64, JournalError>>,
    },
}

/// Counters of the writer, read by tests and metrics.
#[derive(Debug, Default)]
pub(crate) struct JournalStats {
    /// `fsync`s done.
    pub fsyncs: AtomicU64,
    /// Records made durable.
    pub records: AtomicU64,
    /// Set after a failed write: every later append fails.
    pub failed: AtomicBool,
}

/// The handle of the log writer thread. Cloning shares the writer.
#[derive(Clone)]
pub(crate) struct Journal {
    commands: mpsc::UnboundedSender<Command>,
    stats: Arc<JournalStats>,
}

impl Journal {
    /// Opens `log.<generation>` in `dir` and starts the writer thread, which commits at most
    /// `max_batch` records per `fsync` and stops when every handle is dropped.
    ///
    /// # Errors
    /// When the log cannot be opened or the thread cannot be started.
    pub(crate) fn start(dir: &Path, generation: u64, max_batch: usize) -> io::Result<Self> {
        let file = open_log(dir, generation)?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let stats = Arc::new(JournalStats::default());
        let writer = Writer {
            dir: dir.to_owned(),
            generation,
            file,
            max_batch: max_batch.max(1),
            stats: stats.clone(),
            buffer: Vec::with_capacity(64 << 10),
            waiting: Vec::new(),
        };
        std::thread::Builder::new()
            .name("cart-log".into())
            .spawn(move || writer.run(receiver))?;
        Ok(Self { commands, stats })
    }

    /// Queues `frame` (one record, see [`encode_record`]) behind every record queued before;
    /// the receiver answers once it is durable. Callers queue while holding the lock of the
    /// carts the record names, so the log's order is the order the changes were made in.
    pub(crate) fn append(&self, frame: Vec<u8>) -> oneshot::Receiver<Result<(), JournalError>> {
        let (done, receiver) = oneshot::channel();
        if self.stats.failed.load(Ordering::Relaxed) {
            let _ = done.send(Err(JournalError::Failed("an earlier write failed".into())));
        } else if let Err(mpsc::error::SendError(Command::Append { done, .. })) =
            self.commands.send(Command::Append { frame, done })
        {
            let _ = done.send(Err(JournalError::Closed));
        }
        receiver
    }

    /// Commits what is queued and switches to the next log; returns its generation. Every
    /// record queued before the call is in an earlier log.
    ///
    /// # Errors
    /// When the new log cannot be opened, or the writer is gone.
    pub(crate) async fn rotate(&self) -> Result<u64, JournalError> {
        let (done, receiver) = oneshot::channel();
        self.commands
            .send(Command::Rotate { done })
            .map_err(|_| JournalError::Closed)?;
        receiver.await.map_err(|_| JournalError::Closed)?
    }

    /// The writer's counters.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> &JournalStats {
        &self.stats
    }
}

fn open_log(dir: &Path, generation: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(dir, generation))?;
    sync_dir(dir)?;
    Ok(file)
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    generation: u64,
    file: File,
    max_batch: usize,
    stats: Arc<JournalStats>,
    buffer: Vec<u8>,
    waiting: Vec<oneshot::Sender<Result<(), JournalError>>>,
}

impl Writer {
    /// Takes what is queued (up to `max_batch` records), writes it with one `write` and one
    /// `fsync`, answers the batch, and again, until every sender is gone.
    fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        while let Some(first) = commands.blocking_recv() {
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Append { frame, done } => {
                        self.buffer.extend_from_slice(&frame);
                        self.waiting.push(done);
                    }
                    Command::Rotate { done } => {
                        self.commit();
                        let _ = done.send(self.rotate());
                    }
                }
                if self.waiting.len() < self.max_batch {
                    next = commands.try_recv().ok();
                }
            }
            self.commit();
        }
    }

    /// Writes and syncs the buffer, then answers everyone waiting on it.
    fn commit(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let result = if self.stats.failed.load(Ordering::Relaxed) {
            Err(JournalError::Failed("an earlier write failed".into()))
        } else {
            self.file
                .write_all(&self.buffer)
                .and_then(|()| self.file.sync_data())
                .map_err(|e| {
                    self.stats.failed.store(true, Ordering::Relaxed);
                    tracing::error!(error = %e, "the cart log cannot be written");
                    JournalError::Failed(e.to_string())
                })
        };
        self.buffer.clear();
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        if result.is_ok() {
            self.stats
                .records
                .fetch_add(self.waiting.len() as u64, Ordering::Relaxed);
        }
        for done in self.waiting.drain(..) {
            let _ = done.send(result.clone());
        }
    }

    fn rotate(&mut self) -> Result<u64, JournalError> {
        let next = self.generation + 1;
        self.file = open_log(&self.dir, next).map_err(|e| JournalError::Failed(e.to_string()))?;
        self.generation = next;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn line(product_id: i64, quantity: u8) -> Line {
        Line {
            product_id,
            quantity,
            added_at: product_id * 1_000,
        }
    }

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("strata-journal-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn state(dir: &Path) -> (HashMap<OwnerKey, Vec<Line>>, Recovered) {
        let mut carts = HashMap::new();
        let recovered = recover(dir, |owner, lines| match lines {
            Some(lines) => {
                carts.insert(owner, lines);
            }
            None => {
                carts.remove(&owner);
            }
        })
        .unwrap();
        (carts, recovered)
    }

    fn frame(owner: OwnerKey, lines: &[Line]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record([(owner, Some(lines))], &mut out);
        out
    }

    fn deletion(owner: OwnerKey) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record([(owner, None)], &mut out);
        out
    }

    #[tokio::test]
    async fn acknowledged_records_are_replayed_in_order() {
        let dir = dir();
        let journal = Journal::start(&dir, 0, 64).unwrap();
        let a = OwnerKey::User(7);
        let b = OwnerKey::Anonymous(u128::MAX - 3);
        for f in [
            frame(a, &[line(1, 2)]),
            frame(b, &[line(3, 1), line(4, 99)]),
            frame(a, &[line(1, 5)]),
        ] {
            journal.append(f).await.unwrap().unwrap();
        }
        let (carts, recovered) = state(&dir);
        assert_eq!(carts[&a], vec![line(1, 5)]);
        assert_eq!(carts[&b], vec![line(3, 1), line(4, 99)]);
        assert!(!recovered.torn);
        assert_eq!(recovered.next_generation, 1);
        // An emptied cart is kept; a deleted one is gone.
        journal.append(frame(a, &[])).await.unwrap().unwrap();
        assert_eq!(state(&dir).0.get(&a), Some(&Vec::new()));
        journal.append(deletion(a)).await.unwrap().unwrap();
        assert!(!state(&dir).0.contains_key(&a));
    }

    #[tokio::test]
    async fn group_commit_acknowledges_after_the_covering_fsync() {
        let dir = dir();
        let journal = Journal::start(&dir, 0, 1_000).unwrap();
        let receivers: Vec<_> = (0..500)
            .map(|i| journal.append(frame(OwnerKey::User(i), &[line(1, 1)])))
            .collect();
        for receiver in receivers {
            receiver.await.unwrap().unwrap();
            // Every acknowledged record is already counted as synced.
            assert!(journal.stats().records.load(Ordering::Relaxed) >= 1);
        }
        let fsyncs = journal.stats().fsyncs.load(Ordering::Relaxed);
        assert_eq!(journal.stats().records.load(Ordering::Relaxed), 500);
        // 500 records queued at once are committed in far fewer fsyncs than records.
        assert!((1..100).contains(&fsyncs), "{fsyncs} fsyncs");
        // And they are all on disk.
        assert_eq!(state(&dir).0.len(), 500);
    }

    #[tokio::test]
    async fn snapshot_then_log_rebuilds_the_latest_state() {
        let dir = dir();
        let journal = Journal::start(&dir, 0, 64).unwrap();
        let (a, b) = (OwnerKey::User(1), OwnerKey::User(2));
        journal
            .append(frame(a, &[line(1, 1)]))
            .await
            .unwrap()
            .unwrap();
        journal
            .append(frame(b, &[line(2, 2)]))
            .await
            .unwrap()
            .unwrap();
        let generation = journal.rotate().await.unwrap();
        assert_eq!(generation, 1);
        // Changed after the rotation: the snapshot may or may not hold it, the log does.
        journal
            .append(frame(a, &[line(1, 3)]))
            .await
            .unwrap()
            .unwrap();
        let mut snapshot = SnapshotWriter::create(&dir, generation).unwrap();
        snapshot.push(a, vec![line(1, 1)]).unwrap();
        snapshot.push(b, vec![line(2, 2)]).unwrap();
        assert_eq!(snapshot.finish().unwrap(), 2);
        assert!(!log_path(&dir, 0).exists(), "the covered log is removed");
        journal.append(deletion(b)).await.unwrap().unwrap();
        let (carts, recovered) = state(&dir);
        assert_eq!(carts.get(&a), Some(&vec![line(1, 3)]));
        assert_eq!(carts.get(&b), None);
        assert_eq!(recovered.next_generation, 2);
    }

    #[test]
    fn a_corrupt_snapshot_is_an_error() {
        let dir = dir();
        let mut snapshot = SnapshotWriter::create(&dir, 0).unwrap();
        snapshot.push(OwnerKey::User(1), vec![line(1, 1)]).unwrap();
        snapshot.finish().unwrap();
        let mut bytes = fs::read(dir.join(SNAPSHOT)).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(dir.join(SNAPSHOT), bytes).unwrap();
        assert!(recover(&dir, |_, _| {}).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A log cut anywhere (a crash mid-write) or with a flipped byte replays exactly the
        /// whole records before the damage, and never fails.
        #[test]
        fn torn_logs_replay_their_whole_prefix(
            carts in prop::collection::vec(
                (0i64..5, prop::option::of(prop::collection::vec((1i64..60, 1u8..100), 0..4))),
                1..20,
            ),
            cut in any::<prop::sample::Index>(),
            flip in any::<bool>(),
        ) {
            let dir = dir();
            let mut bytes = Vec::new();
            let mut ends = Vec::new();
            let lines_of = |lines: &Option<Vec<(i64, u8)>>| {
                lines.as_ref().map(|l| l.iter().map(|(p, q)| line(*p, *q)).collect::<Vec<_>>())
            };
            for (user, lines) in &carts {
                let lines = lines_of(lines);
                encode_record([(OwnerKey::User(*user), lines.as_deref())], &mut bytes);
                ends.push(bytes.len());
            }
            let at = cut.index(bytes.len());
            if flip {
                bytes[at] ^= 0x5a;
            } else {
                bytes.truncate(at);
            }
            fs::write(log_path(&dir, 0), &bytes).unwrap();
            let (replayed, recovered) = state(&dir);
            // The records wholly before the damaged byte.
            let whole = ends.iter().filter(|end| **end <= at).count();
            let mut expected = HashMap::new();
            for (user, lines) in carts.iter().take(whole) {
                match lines_of(lines) {
                    Some(lines) => expected.insert(OwnerKey::User(*user), lines),
                    None => expected.remove(&OwnerKey::User(*user)),
                };
            }
            prop_assert_eq!(replayed, expected);
            prop_assert_eq!(recovered.torn, flip || (at > 0 && !ends.contains(&at)));
        }
    }
}
