//! Soak test: a mixed workload over one loopback TCP connection for a configurable time, checking
//! every byte and reporting the sessions' and the process's memory high-water marks.
//!
//! Ignored by default. Run it with
//!
//! ```text
//! SOAK_SECS=60 cargo test -p smolmux-testsuite --test soak -- --ignored soak --nocapture
//! ```
//!
//! (`SOAK_SECS` defaults to 30; add `--release` for a faster run.)
//!
//! Both muxes open streams and accept the other's, so every kind of stream runs in both
//! directions at once until the deadline:
//!
//! - **request/response**: write a random-size request (mostly small, sometimes up to 1 MiB),
//!   half-close, read the echo to EOF, compare it byte for byte;
//! - **bulk**: tens of MiB each way at once, each side checking the pattern it receives and both
//!   checksums, exchanged in a trailer;
//! - **dropped**: the opener writes (sometimes stopping at a write that would block), may read
//!   part of the reply, then drops the stream mid-transfer; the acceptor must receive exactly the
//!   bytes that were written before the drop, then EOF;
//! - **aborted by the opener / by the acceptor**: the other side must see
//!   `ConnectionReset` with the abort's reason, after a correct prefix of the data;
//! - **idle**: streams held open for seconds with nothing on them, then used for a short echo;
//! - **slow reader**: the acceptor writes MiBs that the opener reads in small bursts with pauses,
//!   so that flow control holds the writer back.
//!
//! Every 100 ms a sampler records both muxes' [`Stats`] and the process's VmRSS and VmHWM, and
//! checks the stats against the [`Config`] limits. At the end both muxes close cleanly, both
//! drivers must resolve `Ok`, and both sessions must be back to zero open streams.

mod support;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{DefaultHasher, Hasher};
use std::io::{self, ErrorKind};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future::{self, FutureExt as _};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use parking_lot::Mutex;
use smol::{Executor, Task, Timer};
use smolmux::{Config, Mux, Stats, Stream};
use support::{tcp_pair, within, PatternStream};

/// Seconds of workload when `SOAK_SECS` is not set.
const DEFAULT_SECS: u64 = 30;
/// How often the sampler looks at the sessions and the process.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How long the streams in flight at the deadline may take to finish.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// How long each step of the shutdown (handlers, stream table, close, drivers) may take.
const STEP_LIMIT: Duration = Duration::from_secs(30);
/// Random bytes that request/response and idle streams send slices of.
const TABLE_LEN: usize = 2 << 20;
/// Bytes of the trailer a bulk stream's acceptor sends after its data.
const TRAILER_LEN: usize = 32;

/// The settings of both sides: tighter than the defaults where the workload can reach the
/// limits, so that the high-water marks are checked against them.
fn soak_config() -> Config {
    Config::default()
        .stream_receive_buffer(1 << 20)
        // Room for the initial 10 frames of every stream the workload runs at once (about 80,
        // 640 KiB each at most): past the budget, the stream read longest ago is reset (a
        // designed loss that `tests/session.rs` covers), and the soak checks for no loss.
        .session_receive_buffer(64 << 20)
        .stream_send_buffer(128 << 10)
        .ping_interval(Some(Duration::from_secs(1)))
        .ping_timeout(Duration::from_secs(30))
}

// ----- kinds of streams -----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    RequestResponse,
    Bulk,
    Dropped,
    AbortedByOpener,
    AbortedByAcceptor,
    Idle,
    SlowReader,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::RequestResponse,
        Kind::Bulk,
        Kind::Dropped,
        Kind::AbortedByOpener,
        Kind::AbortedByAcceptor,
        Kind::Idle,
        Kind::SlowReader,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Kind::RequestResponse => "request/response",
            Kind::Bulk => "bulk",
            Kind::Dropped => "dropped mid-transfer",
            Kind::AbortedByOpener => "aborted by opener",
            Kind::AbortedByAcceptor => "aborted by acceptor",
            Kind::Idle => "idle",
            Kind::SlowReader => "slow reader",
        }
    }

    /// Workers of this kind on each side, each running one stream at a time.
    fn workers(self) -> usize {
        match self {
            Kind::RequestResponse => 12,
            Kind::Bulk => 2,
            Kind::Dropped => 3,
            Kind::AbortedByOpener => 2,
            Kind::AbortedByAcceptor => 2,
            Kind::Idle => 16,
            Kind::SlowReader => 1,
        }
    }
}

/// What a stream's SYN tells the acceptor: its kind, a unique tag (which seeds its data), and two
/// numbers whose meaning depends on the kind.
#[derive(Clone, Copy, Debug)]
struct Meta {
    kind: Kind,
    tag: u64,
    a: u64,
    b: u64,
}

impl Meta {
    const LEN: usize = 25;

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.tag.to_le_bytes());
        out.extend_from_slice(&self.a.to_le_bytes());
        out.extend_from_slice(&self.b.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Meta, String> {
        if bytes.len() != Self::LEN {
            return Err(format!("metadata of {} bytes: {bytes:?}", bytes.len()));
        }
        let kind = *Kind::ALL
            .get(bytes[0] as usize)
            .ok_or_else(|| format!("unknown kind {} in metadata", bytes[0]))?;
        let word = |i: usize| u64::from_le_bytes(bytes[1 + 8 * i..9 + 8 * i].try_into().unwrap());
        Ok(Meta {
            kind,
            tag: word(0),
            a: word(1),
            b: word(2),
        })
    }
}

/// Seed of the pattern a stream carries from its opener (`dir` 0) or from its acceptor (1).
fn seed(tag: u64, dir: u64) -> u64 {
    tag * 2 + dir
}

// ----- shared state of the run -----

struct Soak {
    deadline: Instant,
    /// Set at the first failure: the workers stop starting streams.
    stop: AtomicBool,
    /// Set just before the muxes are closed: accept errors are expected from then on.
    closing: AtomicBool,
    failures: Mutex<Vec<String>>,
    completed: [AtomicU64; Kind::ALL.len()],
    bytes: [AtomicU64; Kind::ALL.len()],
    /// Bytes written to each dropped stream before its drop, until its acceptor has checked them.
    dropped_ledger: Mutex<HashMap<u64, u64>>,
    /// Bytes written to each stream aborted by its opener, until its acceptor has seen the abort.
    abort_ledger: Mutex<HashMap<u64, u64>>,
    /// Opener aborts that the acceptor saw as a reset (the others never reached `accept`).
    aborts_seen_by_acceptor: AtomicU64,
    next_tag: AtomicU64,
    /// Stream handlers of either acceptor still running.
    handlers: AtomicUsize,
    table: Vec<u8>,
    ex: Arc<Executor<'static>>,
}

impl Soak {
    fn running(&self) -> bool {
        !self.stop.load(Relaxed) && Instant::now() < self.deadline
    }

    fn fail(&self, message: String) {
        eprintln!("soak failure: {message}");
        self.failures.lock().push(message);
        self.stop.store(true, Relaxed);
    }

    fn tag(&self) -> u64 {
        self.next_tag.fetch_add(1, Relaxed)
    }

    fn completed(&self, kind: Kind) {
        self.completed[kind.index()].fetch_add(1, Relaxed);
    }

    fn moved(&self, kind: Kind, bytes: u64) {
        self.bytes[kind.index()].fetch_add(bytes, Relaxed);
    }

    /// Spawns `fut`, recording its error or panic as a failure of the run.
    fn spawn_checked(
        self: &Arc<Self>,
        what: String,
        fut: impl Future<Output = Result<(), String>> + Send + 'static,
    ) -> Task<()> {
        let soak = self.clone();
        self.ex.spawn(async move {
            match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => soak.fail(format!("{what}: {err}")),
                Err(panic) => soak.fail(format!("{what}: panicked: {}", panic_message(&*panic))),
            }
        })
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic)".into()
    }
}

/// Describes a failed operation on stream `tag`.
fn fail_on<E: fmt::Display>(tag: u64, what: &str) -> impl FnOnce(E) -> String + '_ {
    move |err| format!("stream {tag}: {what}: {err}")
}

/// Checks that `err` is the reset of an abort whose reason contains `reason`.
fn check_reset(tag: u64, what: &str, err: &io::Error, reason: &str) -> Result<(), String> {
    if err.kind() == ErrorKind::ConnectionReset && err.to_string().contains(reason) {
        Ok(())
    } else {
        Err(format!(
            "stream {tag}: {what}: expected ConnectionReset mentioning {reason:?}, got {:?}: {err}",
            err.kind()
        ))
    }
}

fn check_equal(tag: u64, what: &str, expected: &[u8], got: &[u8]) -> Result<(), String> {
    if expected == got {
        return Ok(());
    }
    let at = expected
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(got.len()));
    Err(format!(
        "stream {tag}: {what}: expected {} bytes, got {}, first difference at byte {at}",
        expected.len(),
        got.len()
    ))
}

// ----- pattern streams over any reader or writer -----

/// Writes bytes `[0, total)` of `PatternStream::new(seed)` in writes of random sizes, feeding
/// `hash` with them.
async fn send_pattern(
    w: &mut (impl AsyncWrite + Unpin),
    seed: u64,
    total: u64,
    mut hash: Option<&mut DefaultHasher>,
) -> io::Result<()> {
    let mut source = PatternStream::new(seed);
    let mut pos = 0;
    while pos < total {
        let off = (pos % PatternStream::CHUNK as u64) as usize;
        let most = ((PatternStream::CHUNK - off) as u64).min(total - pos) as usize;
        let n = fastrand::usize(1..=most);
        let piece = source.slice(pos, n);
        if let Some(hash) = hash.as_deref_mut() {
            hash.write(piece);
        }
        w.write_all(piece).await?;
        pos += n as u64;
    }
    Ok(())
}

/// Reads `PatternStream::new(seed)` from `r`, checking every byte and feeding `hash`: exactly
/// `limit` bytes if given (EOF before them is an error), else to EOF. Returns the bytes read.
async fn recv_pattern(
    r: &mut (impl AsyncRead + Unpin),
    seed: u64,
    limit: Option<u64>,
    mut hash: Option<&mut DefaultHasher>,
) -> io::Result<u64> {
    let mut check = PatternStream::new(seed);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let want = match limit {
            Some(limit) if check.verified == limit => return Ok(limit),
            Some(limit) => (limit - check.verified).min(buf.len() as u64) as usize,
            None => buf.len(),
        };
        let n = r.read(&mut buf[..want]).await?;
        if n == 0 {
            return match limit {
                None => Ok(check.verified),
                Some(limit) => Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("EOF after {} of {limit} bytes", check.verified),
                )),
            };
        }
        check.verify(&buf[..n]);
        if let Some(hash) = hash.as_deref_mut() {
            hash.write(&buf[..n]);
        }
    }
}

/// Writes up to `total` bytes of `PatternStream::new(seed)` to a stream that is about to be
/// dropped or aborted. With `stop_when_blocked`, stops at the first write that would wait (so
/// the stream goes away with a writer blocked on it). Returns the bytes the stream accepted.
async fn write_before_end(
    stream: &mut Stream,
    seed: u64,
    total: u64,
    stop_when_blocked: bool,
) -> io::Result<u64> {
    let mut source = PatternStream::new(seed);
    let mut pos = 0;
    while pos < total {
        let off = (pos % PatternStream::CHUNK as u64) as usize;
        let most = ((PatternStream::CHUNK - off) as u64).min(total - pos) as usize;
        let piece = source.slice(pos, fastrand::usize(1..=most));
        let written = if stop_when_blocked {
            match future::poll_once(stream.write(piece)).await {
                Some(result) => result?,
                None => break,
            }
        } else {
            stream.write(piece).await?
        };
        pos += written as u64;
    }
    Ok(pos)
}

async fn join_all(tasks: Vec<Task<()>>) {
    for task in tasks {
        task.await;
    }
}

async fn sleep(duration: Duration) {
    Timer::after(duration).await;
}

fn random_millis(range: std::ops::RangeInclusive<u64>) -> Duration {
    Duration::from_millis(fastrand::u64(range))
}

// ----- openers -----

async fn open(mux: &Mux, meta: Meta) -> Result<Stream, String> {
    mux.open(&meta.encode())
        .await
        .map_err(fail_on(meta.tag, "open"))
}

/// Opens and completes one stream of `kind`.
async fn run_opener(soak: &Soak, mux: &Mux, kind: Kind) -> Result<(), String> {
    match kind {
        Kind::RequestResponse => request_response(soak, mux).await,
        Kind::Bulk => bulk(soak, mux).await,
        Kind::Dropped => dropped(soak, mux).await,
        Kind::AbortedByOpener => aborted_by_opener(soak, mux).await,
        Kind::AbortedByAcceptor => aborted_by_acceptor(soak, mux).await,
        Kind::Idle => idle(soak, mux).await,
        Kind::SlowReader => slow_reader(soak, mux).await,
    }
}

/// Mostly small requests, some medium, a few up to 1 MiB.
fn request_size() -> usize {
    match fastrand::u32(..100) {
        0..70 => fastrand::usize(0..=4 << 10),
        70..95 => fastrand::usize(4 << 10..=128 << 10),
        _ => fastrand::usize(128 << 10..=1 << 20),
    }
}

async fn request_response(soak: &Soak, mux: &Mux) -> Result<(), String> {
    let kind = Kind::RequestResponse;
    let len = request_size();
    let off = fastrand::usize(..=TABLE_LEN - len);
    let request = &soak.table[off..off + len];
    let tag = soak.tag();
    let meta = Meta {
        kind,
        tag,
        a: len as u64,
        b: 0,
    };
    let stream = open(mux, meta).await?;
    let (mut r, mut w) = futures_lite::io::split(stream);
    let send = async {
        let mut rest = request;
        while !rest.is_empty() {
            let n = fastrand::usize(1..=rest.len().min(32 << 10));
            w.write_all(&rest[..n]).await?;
            rest = &rest[n..];
        }
        w.close().await
    };
    let recv = async {
        let mut reply = Vec::with_capacity(len);
        r.read_to_end(&mut reply).await.map(|_| reply)
    };
    let (sent, reply) = future::zip(send, recv).await;
    sent.map_err(fail_on(tag, "writing the request"))?;
    let reply = reply.map_err(fail_on(tag, "reading the echo"))?;
    check_equal(tag, "echo", request, &reply)?;
    soak.moved(kind, 2 * len as u64);
    soak.completed(kind);
    Ok(())
}

async fn bulk(soak: &Soak, mux: &Mux) -> Result<(), String> {
    let kind = Kind::Bulk;
    let tag = soak.tag();
    let up = fastrand::u64(4 << 20..=32 << 20);
    let down = fastrand::u64(4 << 20..=32 << 20);
    let stream = open(
        mux,
        Meta {
            kind,
            tag,
            a: up,
            b: down,
        },
    )
    .await?;
    let (mut r, mut w) = futures_lite::io::split(stream);
    let send = async {
        let mut hash = DefaultHasher::new();
        send_pattern(&mut w, seed(tag, 0), up, Some(&mut hash)).await?;
        w.close().await?;
        io::Result::Ok(hash.finish())
    };
    let recv = async {
        let mut hash = DefaultHasher::new();
        recv_pattern(&mut r, seed(tag, 1), Some(down), Some(&mut hash)).await?;
        let mut trailer = Vec::new();
        r.read_to_end(&mut trailer).await?;
        io::Result::Ok((hash.finish(), trailer))
    };
    let (sent, received) = future::zip(send, recv).await;
    let up_hash = sent.map_err(fail_on(tag, "sending bulk data"))?;
    let (down_hash, trailer) = received.map_err(fail_on(tag, "receiving bulk data"))?;
    if trailer.len() != TRAILER_LEN {
        return Err(format!(
            "stream {tag}: trailer of {} bytes after the bulk data, expected {TRAILER_LEN}",
            trailer.len()
        ));
    }
    let word = |i: usize| u64::from_le_bytes(trailer[8 * i..8 * i + 8].try_into().unwrap());
    let got = [word(0), word(1), word(2), word(3)];
    let expected = [up, up_hash, down, down_hash];
    if got != expected {
        return Err(format!(
            "stream {tag}: bulk checksums differ: the acceptor received {} bytes with hash {:#x} \
             (sent {up} with hash {up_hash:#x}); it sent {} bytes with hash {:#x} (received \
             {down} with hash {down_hash:#x})",
            got[0], got[1], got[2], got[3]
        ));
    }
    soak.moved(kind, up + down);
    soak.completed(kind);
    Ok(())
}

async fn dropped(soak: &Soak, mux: &Mux) -> Result<(), String> {
    let kind = Kind::Dropped;
    let tag = soak.tag();
    let down = fastrand::u64(0..=2 << 20);
    let target = fastrand::u64(0..=2 << 20);
    let mut stream = open(
        mux,
        Meta {
            kind,
            tag,
            a: down,
            b: 0,
        },
    )
    .await?;
    // 0: write everything, then drop; 1: drop at the first write that would wait; 2: write
    // everything, read part of the acceptor's data, then drop while it is still sending.
    let mode = fastrand::u8(0..3);
    let sent = write_before_end(&mut stream, seed(tag, 0), target, mode == 1)
        .await
        .map_err(fail_on(tag, "writing before the drop"))?;
    let mut read = 0;
    if mode == 2 {
        let want = fastrand::u64(0..=down);
        read = recv_pattern(&mut stream, seed(tag, 1), Some(want), None)
            .await
            .map_err(fail_on(tag, "reading before the drop"))?;
    } else if fastrand::bool() {
        sleep(random_millis(0..=5)).await;
    }
    soak.dropped_ledger.lock().insert(tag, sent);
    drop(stream);
    // The acceptor checks the bytes written and counts the stream as completed.
    soak.moved(kind, read);
    Ok(())
}

async fn aborted_by_opener(soak: &Soak, mux: &Mux) -> Result<(), String> {
    let kind = Kind::AbortedByOpener;
    let tag = soak.tag();
    let mut stream = open(
        mux,
        Meta {
            kind,
            tag,
            a: 0,
            b: 0,
        },
    )
    .await?;
    let target = fastrand::u64(0..=1 << 20);
    let sent = write_before_end(&mut stream, seed(tag, 0), target, fastrand::bool())
        .await
        .map_err(fail_on(tag, "writing before the abort"))?;
    if fastrand::bool() {
        sleep(random_millis(0..=3)).await;
    }
    soak.abort_ledger.lock().insert(tag, sent);
    let reason = format!("soak: opener aborts {tag}");
    stream.abort(&reason);
    // Both directions now fail here too.
    match stream.read(&mut [0; 16]).await {
        Err(err) => check_reset(tag, "read after abort", &err, &reason)?,
        Ok(n) => return Err(format!("stream {tag}: read after abort gave Ok({n})")),
    }
    match stream.write(b"more").await {
        Err(err) => check_reset(tag, "write after abort", &err, &reason)?,
        Ok(n) => return Err(format!("stream {tag}: write after abort gave Ok({n})")),
    }
    soak.completed(kind);
    Ok(())
}

async fn aborted_by_acceptor(soak: &Soak, mux: &Mux) -> Result<(), String> {
    let kind = Kind::AbortedByAcceptor;
    let tag = soak.tag();
    let before_abort = fastrand::u64(0..=1 << 20);
    let total = before_abort + fastrand::u64(0..=1 << 20);
    let mut stream = open(
        mux,
        Meta {
            kind,
            tag,
            a: before_abort,
            b: 0,
        },
    )
    .await?;
    let reason = format!("soak: acceptor aborts {tag}");
    // The writes go through or fail with the abort, depending on when it arrives...
    if let Err(err) = send_pattern(&mut stream, seed(tag, 0), total, None).await {
        check_reset(tag, "write", &err, &reason)?;
    }
    // ...but the acceptor never writes, so a read can only end with the abort.
    match stream.read(&mut [0; 16]).await {
        Err(err) => check_reset(tag, "read", &err, &reason)?,
        Ok(n) => {
            return Err(format!(
                "stream {tag}: read gave Ok({n}) instead of the abort"
            ))
        }
    }
    soak.completed(kind);
    Ok(())
}

async fn idle(soak: &Soak, mux: &Mux) -> Result<(), String> {
    let kind = Kind::Idle;
    let tag = soak.tag();
    let len = fastrand::usize(1..=512);
    let off = fastrand::usize(..=TABLE_LEN - len);
    let message = &soak.table[off..off + len];
    let mut stream = open(
        mux,
        Meta {
            kind,
            tag,
            a: len as u64,
            b: 0,
        },
    )
    .await?;
    let until = Instant::now() + random_millis(500..=5_000);
    while soak.running() {
        let now = Instant::now();
        if now >= until {
            break;
        }
        sleep((until - now).min(SAMPLE_EVERY)).await;
        // Nothing may arrive on an idle stream.
        if let Some(result) = future::poll_once(stream.read(&mut [0; 16])).await {
            return Err(format!(
                "stream {tag}: idle stream became readable: {result:?}"
            ));
        }
    }
    stream
        .write_all(message)
        .await
        .map_err(fail_on(tag, "write after idling"))?;
    stream
        .close()
        .await
        .map_err(fail_on(tag, "close after idling"))?;
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .await
        .map_err(fail_on(tag, "reading the echo after idling"))?;
    check_equal(tag, "echo after idling", message, &reply)?;
    soak.moved(kind, 2 * len as u64);
    soak.completed(kind);
    Ok(())
}

async fn slow_reader(soak: &Soak, mux: &Mux) -> Result<(), String> {
    let kind = Kind::SlowReader;
    let tag = soak.tag();
    let len = fastrand::u64(1 << 20..=6 << 20);
    let mut stream = open(
        mux,
        Meta {
            kind,
            tag,
            a: len,
            b: 0,
        },
    )
    .await?;
    stream.close().await.map_err(fail_on(tag, "half-close"))?;
    let mut check = PatternStream::new(seed(tag, 1));
    let mut buf = vec![0u8; 16 << 10];
    'read: loop {
        for _ in 0..fastrand::usize(1..=4) {
            let want = fastrand::usize(512..=buf.len());
            let n = stream
                .read(&mut buf[..want])
                .await
                .map_err(fail_on(tag, "slow read"))?;
            if n == 0 {
                break 'read;
            }
            check.verify(&buf[..n]);
        }
        sleep(random_millis(2..=20)).await;
    }
    if check.verified != len {
        return Err(format!(
            "stream {tag}: slow reader got EOF after {} of {len} bytes",
            check.verified
        ));
    }
    soak.moved(kind, len);
    soak.completed(kind);
    Ok(())
}

// ----- acceptors -----

/// Accepts the peer's streams until the session closes, serving each on its own task.
async fn accept_loop(soak: Arc<Soak>, side: &'static str, mux: Mux) -> Result<(), String> {
    loop {
        let stream = match mux.accept().await {
            Ok(stream) => stream,
            Err(_) if soak.closing.load(Relaxed) => return Ok(()),
            Err(err) => return Err(format!("accept failed: {err}")),
        };
        let meta = Meta::decode(stream.metadata())?;
        soak.handlers.fetch_add(1, Relaxed);
        let handler = soak.clone();
        soak.spawn_checked(
            format!("{side} acceptor, {} stream {}", meta.kind.name(), meta.tag),
            async move {
                let result = serve(&handler, meta, stream).await;
                handler.handlers.fetch_sub(1, Relaxed);
                result
            },
        )
        .detach();
    }
}

async fn serve(soak: &Soak, meta: Meta, stream: Stream) -> Result<(), String> {
    let Meta { kind, tag, a, b } = meta;
    match kind {
        Kind::RequestResponse | Kind::Idle => {
            let (r, mut w) = futures_lite::io::split(stream);
            let echoed = futures_lite::io::copy(r, &mut w)
                .await
                .map_err(fail_on(tag, "echo"))?;
            w.close().await.map_err(fail_on(tag, "close after echo"))?;
            if echoed != a {
                return Err(format!(
                    "stream {tag}: echoed {echoed} bytes, the opener sent {a}"
                ));
            }
        }
        Kind::Bulk => {
            let (mut r, mut w) = futures_lite::io::split(stream);
            let recv = async {
                let mut hash = DefaultHasher::new();
                let n = recv_pattern(&mut r, seed(tag, 0), None, Some(&mut hash)).await?;
                io::Result::Ok((n, hash.finish()))
            };
            let send = async {
                let mut hash = DefaultHasher::new();
                send_pattern(&mut w, seed(tag, 1), b, Some(&mut hash)).await?;
                io::Result::Ok(hash.finish())
            };
            let (received, sent) = future::zip(recv, send).await;
            let (up, up_hash) = received.map_err(fail_on(tag, "receiving bulk data"))?;
            let down_hash = sent.map_err(fail_on(tag, "sending bulk data"))?;
            let mut trailer = Vec::with_capacity(TRAILER_LEN);
            for word in [up, up_hash, b, down_hash] {
                trailer.extend_from_slice(&word.to_le_bytes());
            }
            w.write_all(&trailer)
                .await
                .map_err(fail_on(tag, "sending the trailer"))?;
            w.close().await.map_err(fail_on(tag, "close after bulk"))?;
        }
        Kind::Dropped => {
            let (mut r, mut w) = futures_lite::io::split(stream);
            let recv = recv_pattern(&mut r, seed(tag, 0), None, None);
            let send = async {
                send_pattern(&mut w, seed(tag, 1), a, None).await?;
                w.close().await
            };
            let (received, sent) = future::zip(recv, send).await;
            let received = received.map_err(fail_on(tag, "reading a dropped stream"))?;
            // The opener's drop tells us to stop sending: our writes may fail with BrokenPipe
            // (if they had not all gone yet), and with nothing else.
            match sent {
                Ok(()) => {}
                Err(err)
                    if err.kind() == io::ErrorKind::BrokenPipe
                        && err.to_string().contains("stopped reading") => {}
                Err(err) => return Err(fail_on(tag, "writing to a dropped stream")(err)),
            }
            let Some(written) = soak.dropped_ledger.lock().remove(&tag) else {
                return Err(format!(
                    "stream {tag}: EOF after {received} bytes before the opener dropped the stream"
                ));
            };
            if received != written {
                return Err(format!(
                    "stream {tag}: the opener wrote {written} bytes before dropping the stream, \
                     the acceptor received {received} then EOF"
                ));
            }
            soak.moved(kind, received);
            soak.completed(kind);
        }
        Kind::AbortedByOpener => {
            let mut stream = stream;
            let reason = format!("soak: opener aborts {tag}");
            let mut check = PatternStream::new(seed(tag, 0));
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) => {
                        return Err(format!(
                            "stream {tag}: EOF after {} bytes instead of the abort",
                            check.verified
                        ))
                    }
                    Ok(n) => check.verify(&buf[..n]),
                    Err(err) => {
                        check_reset(tag, "read", &err, &reason)?;
                        break;
                    }
                }
            }
            let Some(written) = soak.abort_ledger.lock().remove(&tag) else {
                return Err(format!(
                    "stream {tag}: reset seen before the opener aborted"
                ));
            };
            if check.verified > written {
                return Err(format!(
                    "stream {tag}: received {} bytes, the opener wrote only {written}",
                    check.verified
                ));
            }
            soak.aborts_seen_by_acceptor.fetch_add(1, Relaxed);
            soak.moved(kind, check.verified);
        }
        Kind::AbortedByAcceptor => {
            let mut stream = stream;
            recv_pattern(&mut stream, seed(tag, 0), Some(a), None)
                .await
                .map_err(fail_on(tag, "reading before the abort"))?;
            stream.abort(&format!("soak: acceptor aborts {tag}"));
            soak.moved(kind, a);
        }
        Kind::SlowReader => {
            let mut stream = stream;
            send_pattern(&mut stream, seed(tag, 1), a, None)
                .await
                .map_err(fail_on(tag, "writing to the slow reader"))?;
            stream
                .close()
                .await
                .map_err(fail_on(tag, "close to the slow reader"))?;
            let mut rest = Vec::new();
            stream
                .read_to_end(&mut rest)
                .await
                .map_err(fail_on(tag, "reading the slow reader's side"))?;
            if !rest.is_empty() {
                return Err(format!(
                    "stream {tag}: the slow reader sent {} bytes",
                    rest.len()
                ));
            }
        }
    }
    Ok(())
}

// ----- sampling -----

/// Process memory from /proc/self/status, in KiB: (VmRSS, VmHWM).
fn process_memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[derive(Clone, Copy, Default)]
struct SideMarks {
    open_streams: usize,
    pending_accept: usize,
    recv_buffered_bytes: usize,
    send_buffered_bytes: usize,
}

impl SideMarks {
    fn update(&mut self, s: &Stats) {
        self.open_streams = self.open_streams.max(s.open_streams);
        self.pending_accept = self.pending_accept.max(s.pending_accept);
        self.recv_buffered_bytes = self.recv_buffered_bytes.max(s.recv_buffered_bytes);
        self.send_buffered_bytes = self.send_buffered_bytes.max(s.send_buffered_bytes);
    }
}

#[derive(Default)]
struct Marks {
    samples: u64,
    sides: [SideMarks; 2],
    rss_start_kb: u64,
    rss_max_kb: u64,
    vm_hwm_kb: u64,
    /// Samples whose stats broke a limit of the config (the first few).
    violations: Vec<String>,
    violation_count: u64,
}

const SIDES: [&str; 2] = ["A (connector)", "B (acceptor of the TCP connection)"];

impl Marks {
    fn sample(&mut self, start: Instant, config: &Config, stats: [Stats; 2]) {
        let (rss, hwm) = process_memory();
        self.samples += 1;
        self.rss_max_kb = self.rss_max_kb.max(rss);
        self.vm_hwm_kb = self.vm_hwm_kb.max(hwm);
        for (i, s) in stats.iter().enumerate() {
            self.sides[i].update(s);
            let recv_limit = config.session_receive_buffer + 65_535;
            let send_limit = s.open_streams * config.stream_send_buffer;
            let mut broken = Vec::new();
            if s.recv_buffered_bytes > recv_limit {
                broken.push(format!("recv_buffered_bytes > {recv_limit}"));
            }
            if s.send_buffered_bytes > send_limit {
                broken.push(format!(
                    "send_buffered_bytes > open_streams × stream_send_buffer = {send_limit}"
                ));
            }
            if !broken.is_empty() {
                self.violation_count += 1;
                if self.violations.len() < 10 {
                    self.violations.push(format!(
                        "at {:.1} s, side {}: {} in {s:?}",
                        start.elapsed().as_secs_f64(),
                        SIDES[i],
                        broken.join(", ")
                    ));
                }
            }
        }
    }
}

// ----- the test -----

#[test]
#[ignore = "soak test: run with `cargo test -p smolmux-testsuite -- --ignored soak` (SOAK_SECS sets its length)"]
fn soak() {
    let secs = match std::env::var("SOAK_SECS") {
        Ok(value) => value
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("SOAK_SECS must be a number of seconds, got {value:?}")),
        Err(_) => DEFAULT_SECS,
    };
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 4);

    // One executor, driven by this thread and `threads - 1` helpers.
    let ex = Arc::new(Executor::new());
    let (stop_helpers, helpers_stopped) = async_channel::bounded::<()>(1);
    let helpers: Vec<_> = (1..threads)
        .map(|i| {
            let ex = ex.clone();
            let stopped = helpers_stopped.clone();
            std::thread::Builder::new()
                .name(format!("soak-executor-{i}"))
                .spawn(move || {
                    // Ends when the sender is dropped.
                    let _ = smol::block_on(ex.run(stopped.recv()));
                })
                .expect("spawn executor thread")
        })
        .collect();
    let result = catch_unwind(AssertUnwindSafe(|| {
        smol::block_on(ex.run(run_soak(ex.clone(), Duration::from_secs(secs), threads)))
    }));
    drop(stop_helpers);
    for helper in helpers {
        helper.join().expect("executor thread");
    }
    if let Err(panic) = result {
        resume_unwind(panic);
    }
}

async fn run_soak(ex: Arc<Executor<'static>>, duration: Duration, threads: usize) {
    let config = soak_config();
    let (rss_start_kb, _) = process_memory();
    let start = Instant::now();
    let mut table = vec![0u8; TABLE_LEN];
    fastrand::fill(&mut table);
    let soak = Arc::new(Soak {
        deadline: start + duration,
        stop: AtomicBool::new(false),
        closing: AtomicBool::new(false),
        failures: Mutex::new(Vec::new()),
        completed: std::array::from_fn(|_| AtomicU64::new(0)),
        bytes: std::array::from_fn(|_| AtomicU64::new(0)),
        dropped_ledger: Mutex::new(HashMap::new()),
        abort_ledger: Mutex::new(HashMap::new()),
        aborts_seen_by_acceptor: AtomicU64::new(0),
        next_tag: AtomicU64::new(1),
        handlers: AtomicUsize::new(0),
        table,
        ex: ex.clone(),
    });

    let (x, y) = tcp_pair().await;
    let (a, driver_a) = Mux::new(x.clone(), x, config.clone());
    let (b, driver_b) = Mux::new(y.clone(), y, config.clone());
    let driver_a = ex.spawn(driver_a);
    let driver_b = ex.spawn(driver_b);

    // The sampler.
    let marks = Arc::new(Mutex::new(Marks {
        rss_start_kb,
        ..Marks::default()
    }));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (a, b, marks, sampling, config) = (
            a.clone(),
            b.clone(),
            marks.clone(),
            sampling.clone(),
            config.clone(),
        );
        ex.spawn(async move {
            while sampling.load(Relaxed) {
                marks.lock().sample(start, &config, [a.stats(), b.stats()]);
                sleep(SAMPLE_EVERY).await;
            }
        })
    };

    // Both sides accept the other's streams and open their own.
    let acceptors = [
        soak.spawn_checked(
            "acceptor A".into(),
            accept_loop(soak.clone(), "A", a.clone()),
        ),
        soak.spawn_checked(
            "acceptor B".into(),
            accept_loop(soak.clone(), "B", b.clone()),
        ),
    ];
    let mut workers = Vec::new();
    for (side, mux) in [("A", &a), ("B", &b)] {
        for kind in Kind::ALL {
            for i in 0..kind.workers() {
                let (soak2, mux) = (soak.clone(), mux.clone());
                workers.push(soak.spawn_checked(
                    format!("{side} {} worker {i}", kind.name()),
                    async move {
                        while soak2.running() {
                            run_opener(&soak2, &mux, kind).await?;
                        }
                        Ok(())
                    },
                ));
            }
        }
    }
    let stats_now = |a: &Mux, b: &Mux| format!("A {:?}, B {:?}", a.stats(), b.stats());

    // The deadline passes; the streams in flight finish.
    let drained = within(duration + DRAIN_LIMIT, join_all(workers)).await;
    let workload_secs = start.elapsed().as_secs_f64();
    if drained.is_none() {
        soak.fail(format!(
            "openers still running {DRAIN_LIMIT:?} after the deadline: {}",
            stats_now(&a, &b)
        ));
    }
    let handlers_done = within(STEP_LIMIT, async {
        while soak.handlers.load(Relaxed) > 0 {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if handlers_done.is_none() {
        soak.fail(format!(
            "{} acceptor handlers still running {STEP_LIMIT:?} after the openers finished: {}",
            soak.handlers.load(Relaxed),
            stats_now(&a, &b)
        ));
    }

    // With every stream done on both sides, both tables empty.
    let emptied = within(STEP_LIMIT, async {
        while a.stats().open_streams > 0 || b.stats().open_streams > 0 {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if emptied.is_none() {
        soak.fail(format!(
            "open_streams did not return to 0 within {STEP_LIMIT:?} after every stream was done: {}",
            stats_now(&a, &b)
        ));
    }
    let end_stats = [a.stats(), b.stats()];

    // Close both sides cleanly; both drivers end with Ok.
    soak.closing.store(true, Relaxed);
    match within(STEP_LIMIT, future::zip(a.close(), b.close())).await {
        None => soak.fail(format!("Mux::close did not return within {STEP_LIMIT:?}")),
        Some((ra, rb)) => {
            for (side, result) in [("A", ra), ("B", rb)] {
                if let Err(err) = result {
                    soak.fail(format!("Mux::close on {side} failed: {err}"));
                }
            }
        }
    }
    match within(STEP_LIMIT, future::zip(driver_a, driver_b)).await {
        None => soak.fail(format!(
            "the drivers did not end within {STEP_LIMIT:?} of the close"
        )),
        Some((ra, rb)) => {
            for (side, result) in [("A", ra), ("B", rb)] {
                if let Err(err) = result {
                    soak.fail(format!("driver {side} ended with an error: {err}"));
                }
            }
        }
    }
    if within(STEP_LIMIT, join_all(Vec::from(acceptors)))
        .await
        .is_none()
    {
        soak.fail("the accept loops did not end after the close".into());
    }
    let elapsed = start.elapsed();
    sampling.store(false, Relaxed);
    sampler.await;
    let mut marks = marks.lock();
    marks.sample(start, &config, [a.stats(), b.stats()]);

    // ----- the report -----
    let total_bytes: u64 = soak.bytes.iter().map(|b| b.load(Relaxed)).sum();
    let mut report = String::new();
    let mut line = |text: String| {
        report.push_str(&text);
        report.push('\n');
    };
    line(format!(
        "soak: SOAK_SECS={}; the streams in flight at the deadline finished at {:.1} s, and the \
         sessions were closed at {:.1} s; {threads} executor threads",
        duration.as_secs(),
        workload_secs,
        elapsed.as_secs_f64()
    ));
    line(format!(
        "config: stream_receive_buffer {}, session_receive_buffer {}, stream_send_buffer {}, \
         max_streams {}, accept_backlog {}, ping_interval {:?}",
        config.stream_receive_buffer,
        config.session_receive_buffer,
        config.stream_send_buffer,
        config.max_streams,
        config.accept_backlog,
        config.ping_interval
    ));
    line("streams completed (both directions) and bytes verified:".into());
    for kind in Kind::ALL {
        line(format!(
            "  {:<22} {:>8} streams {:>14} bytes  (workers per side: {})",
            kind.name(),
            soak.completed[kind.index()].load(Relaxed),
            soak.bytes[kind.index()].load(Relaxed),
            kind.workers()
        ));
    }
    line(format!(
        "  opener aborts seen by the acceptor: {} (the rest were dropped from its backlog unseen)",
        soak.aborts_seen_by_acceptor.load(Relaxed)
    ));
    line(format!(
        "bytes moved and verified: {total_bytes} ({:.1} MiB, {:.1} MiB/s)",
        total_bytes as f64 / (1 << 20) as f64,
        total_bytes as f64 / (1 << 20) as f64 / workload_secs
    ));
    line(format!(
        "high-water marks over {} samples (every {SAMPLE_EVERY:?}):",
        marks.samples
    ));
    for (i, side) in SIDES.iter().enumerate() {
        let m = marks.sides[i];
        line(format!(
            "  {side}: open_streams {}, pending_accept {}, recv_buffered_bytes {} (limit {}), \
             send_buffered_bytes {} (open_streams high-water × stream_send_buffer = {})",
            m.open_streams,
            m.pending_accept,
            m.recv_buffered_bytes,
            config.session_receive_buffer + 65_535,
            m.send_buffered_bytes,
            m.open_streams * config.stream_send_buffer
        ));
    }
    line(format!(
        "  process: VmRSS {} KiB at start, {} KiB highest sampled; VmHWM {} KiB",
        marks.rss_start_kb, marks.rss_max_kb, marks.vm_hwm_kb
    ));
    line(format!(
        "after the workload: A {:?}, B {:?}",
        end_stats[0], end_stats[1]
    ));
    print!("{report}");

    // ----- the verdict -----
    let mut problems = soak.failures.lock().clone();
    let unchecked_drops = soak.dropped_ledger.lock().len();
    if unchecked_drops > 0 {
        problems.push(format!(
            "{unchecked_drops} dropped streams never reached their acceptor's check"
        ));
    }
    if marks.violation_count > 0 {
        problems.push(format!(
            "{} samples broke a config limit; the first: {:#?}",
            marks.violation_count, marks.violations
        ));
    }
    for (i, side) in SIDES.iter().enumerate() {
        let m = marks.sides[i];
        if m.recv_buffered_bytes > config.session_receive_buffer + 65_535 {
            problems.push(format!(
                "{side}: recv_buffered_bytes high-water {} exceeds session_receive_buffer + 65,535",
                m.recv_buffered_bytes
            ));
        }
        if m.send_buffered_bytes > m.open_streams * config.stream_send_buffer {
            problems.push(format!(
                "{side}: send_buffered_bytes high-water {} exceeds open_streams high-water × \
                 stream_send_buffer",
                m.send_buffered_bytes
            ));
        }
        if end_stats[i].open_streams != 0 {
            problems.push(format!(
                "{side}: {} streams still open after the workload",
                end_stats[i].open_streams
            ));
        }
    }
    for kind in Kind::ALL {
        if soak.completed[kind.index()].load(Relaxed) == 0 && problems.is_empty() {
            problems.push(format!("no {} stream completed", kind.name()));
        }
    }
    assert!(
        problems.is_empty(),
        "soak failed:\n  {}",
        problems.join("\n  ")
    );
}
