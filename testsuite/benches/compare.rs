//! Comparative benchmark: raw TCP, smolmux, yamux 0.13 and picomux 0.1.18 over loopback TCP.
//!
//! ```text
//! cargo bench -p smolmux-testsuite --bench compare    # from the repository's root (this is testsuite/)
//! BENCH_ONLY=smolmux,raw BENCH_SCENARIOS=1,3 BENCH_RUNS=3 cargo bench -p smolmux-testsuite --bench compare
//! ```
//!
//! Both ends of every connection live in this process and run on one `smol::Executor` driven by
//! two threads (picomux additionally runs its own tasks on smolscale's threads, which it spawns
//! internally and which cannot be avoided). Every socket has TCP_NODELAY set. Every byte that
//! crosses a stream is checked by its receiver against a per-stream pattern, and the receivers
//! read exactly the expected length before anyone closes (see "Stream protocols" below), so a
//! lost, duplicated or reordered byte fails the run: the program prints the failure and exits
//! non-zero at the end. For picomux, whose streams are known to lose their tail when a close
//! races the last write (PROTOCOL.md), stream failures are counted and reported as a note instead.
//!
//! Scenarios (each repeated `BENCH_RUNS` times, implementations interleaved within a repetition;
//! the table shows medians):
//!
//! 1. one stream moves `BENCH_BULK_BYTES` one way in 64 KiB writes: MB/s;
//! 2. 32 streams move `BENCH_BULK_BYTES / 32` each at once (raw TCP: 32 connections): MB/s;
//! 3. 64-byte echo round trips on one stream, sequential, after a warm-up: p50 and p99 in µs;
//! 4. the same echo while another stream (raw: another connection) bulk-sends: p99 in µs;
//! 5. open + 64-byte echo + close by 64 concurrent workers (raw: one connection per stream):
//!    streams/s;
//! 6. heap bytes per idle stream, both ends together, measured by a counting global allocator
//!    with `BENCH_IDLE_STREAMS` streams open and held (raw TCP: one connection per stream;
//!    kernel socket memory is not heap and is not counted);
//! 7. peak RSS (VmHWM) of a child process (this binary re-executed) that runs scenario 2 once.
//!
//! Environment: `BENCH_BULK_BYTES` (default 256 MiB), `BENCH_RUNS` (5), `BENCH_ONLY`
//! (e.g. `smolmux,raw`), `BENCH_SCENARIOS` (e.g. `1,3`), `BENCH_RTT_COUNT` (2,000),
//! `BENCH_OPEN_COUNT` (10,000), `BENCH_IDLE_STREAMS` (1,000), `BENCH_PROBE_SECS` (2),
//! `BENCH_TIMEOUT_SECS` (120, per measurement).
//!
//! Output: a markdown table on stdout, `target/bench/results.json` and `docs/bench.svg` (both
//! at the repository's root).
//!
//! Stream protocols (the same for every implementation):
//! - bulk: the opener writes a 4-byte stream index, then N pattern bytes, and reads a 1-byte ack;
//!   the acceptor reads the index and exactly N bytes (checking each), writes the ack and reads
//!   EOF; the opener closes after the ack and reads EOF; the acceptor closes after its EOF. No
//!   side closes while data is still owed to it, which keeps picomux's close race out of the way.
//! - echo: the opener writes 64-byte messages and reads each reply in full before the next; the
//!   acceptor echoes until EOF, then closes; the opener closes after its last reply and reads EOF.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_channel::{Receiver, Sender};
use futures_lite::future::{self, FutureExt as _};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use serde_json::{json, Value};
use smol::net::{TcpListener, TcpStream};
use smol::{Executor, Task, Timer};

// ------------------------------------------------------------------------------------------
// Counting allocator (scenario 6)
// ------------------------------------------------------------------------------------------

/// Live heap bytes: allocated minus freed, over the whole process.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ------------------------------------------------------------------------------------------
// Settings
// ------------------------------------------------------------------------------------------

const CHUNK: usize = 64 << 10;
const MSG: usize = 64;
const BULK_STREAMS: u32 = 32;
const OPEN_WORKERS: usize = 64;
const RTT_WARMUP: usize = 200;
/// Period of the test pattern; not a multiple of any frame or write size.
const PERIOD: usize = (1 << 20) + 7;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Impl {
    Raw,
    Smolmux,
    Yamux,
    Picomux,
}

const ALL_IMPLS: [Impl; 4] = [Impl::Raw, Impl::Smolmux, Impl::Yamux, Impl::Picomux];

impl Impl {
    fn key(self) -> &'static str {
        match self {
            Impl::Raw => "raw",
            Impl::Smolmux => "smolmux",
            Impl::Yamux => "yamux",
            Impl::Picomux => "picomux",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Impl::Raw => "raw TCP",
            Impl::Smolmux => "smolmux",
            Impl::Yamux => "yamux 0.13",
            Impl::Picomux => "picomux 0.1.18",
        }
    }
    fn parse(s: &str) -> Option<Impl> {
        match s.trim().to_ascii_lowercase().as_str() {
            "raw" | "tcp" | "rawtcp" | "raw_tcp" => Some(Impl::Raw),
            "smolmux" | "smol" => Some(Impl::Smolmux),
            "yamux" => Some(Impl::Yamux),
            "picomux" | "pico" => Some(Impl::Picomux),
            _ => None,
        }
    }
    /// picomux's stream failures are counted, not fatal (known truncation race).
    fn failures_tolerated(self) -> bool {
        self == Impl::Picomux
    }
}

#[derive(Clone, Debug)]
struct Opts {
    bulk_bytes: u64,
    runs: usize,
    impls: Vec<Impl>,
    scenarios: Vec<u8>,
    rtt_count: usize,
    open_count: usize,
    idle_streams: usize,
    probe_secs: f64,
    timeout: Duration,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.trim().replace('_', "").parse().unwrap_or_else(|_| {
            eprintln!("{name}={v:?} is not a number");
            std::process::exit(2)
        }),
        Err(_) => default,
    }
}

impl Opts {
    fn from_env() -> Opts {
        let impls = match std::env::var("BENCH_ONLY") {
            Ok(list) if !list.trim().is_empty() => {
                let mut v: Vec<Impl> = list
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| {
                        Impl::parse(s).unwrap_or_else(|| {
                            eprintln!("BENCH_ONLY: unknown implementation {s:?} (raw, smolmux, yamux, picomux)");
                            std::process::exit(2)
                        })
                    })
                    .collect();
                v.sort();
                v.dedup();
                v
            }
            _ => ALL_IMPLS.to_vec(),
        };
        let scenarios = match std::env::var("BENCH_SCENARIOS") {
            Ok(list) if !list.trim().is_empty() => {
                let mut v: Vec<u8> = list
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| match s.trim().parse::<u8>() {
                        Ok(n @ 1..=7) => n,
                        _ => {
                            eprintln!("BENCH_SCENARIOS: {s:?} is not a scenario number 1..=7");
                            std::process::exit(2)
                        }
                    })
                    .collect();
                v.sort();
                v.dedup();
                v
            }
            _ => (1..=7).collect(),
        };
        let bulk_bytes: u64 = env_num("BENCH_BULK_BYTES", 256u64 << 20);
        if bulk_bytes < BULK_STREAMS as u64 {
            eprintln!("BENCH_BULK_BYTES must be at least {BULK_STREAMS}");
            std::process::exit(2);
        }
        Opts {
            bulk_bytes,
            runs: env_num("BENCH_RUNS", 5usize).max(1),
            impls,
            scenarios,
            rtt_count: env_num("BENCH_RTT_COUNT", 2000usize).max(1),
            open_count: env_num("BENCH_OPEN_COUNT", 10_000usize).max(1),
            idle_streams: env_num("BENCH_IDLE_STREAMS", 1000usize).max(1),
            probe_secs: env_num("BENCH_PROBE_SECS", 2.0f64),
            timeout: Duration::from_secs_f64(env_num("BENCH_TIMEOUT_SECS", 120.0f64)),
        }
    }
}

fn smolmux_config() -> smolmux::Config {
    smolmux::Config::default()
}

fn yamux_config() -> yamux::Config {
    let mut cfg = yamux::Config::default();
    // Default is 512 streams; scenario 6 holds 1,000 (+ headroom). 4,096 x 256 KiB = 1 GiB,
    // the default connection receive window, so the window is left at its default.
    cfg.set_max_num_streams(4096);
    cfg
}

// ------------------------------------------------------------------------------------------
// Runtime: one executor, two threads
// ------------------------------------------------------------------------------------------

static EX: Executor<'static> = Executor::new();
const EXECUTOR_THREADS: usize = 2;

fn start_executor() {
    for i in 0..EXECUTOR_THREADS {
        std::thread::Builder::new()
            .name(format!("bench-ex-{i}"))
            .spawn(|| smol::block_on(EX.run(future::pending::<()>())))
            .expect("spawn executor thread");
    }
}

fn spawn<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> Task<T> {
    EX.spawn(f)
}

/// Runs a future on the executor and waits for it from this (non-executor) thread.
fn block<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    smol::block_on(EX.spawn(f))
}

async fn with_timeout<T>(d: Duration, f: impl Future<Output = T>) -> Option<T> {
    async { Some(f.await) }
        .or(async {
            Timer::after(d).await;
            None
        })
        .await
}

// ------------------------------------------------------------------------------------------
// Data pattern and verification
// ------------------------------------------------------------------------------------------

/// Two periods of xorshift bytes, so any slice of up to one period starting in the first is
/// contiguous.
static PATTERN: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut p: Vec<u8> = (0..PERIOD)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    p.extend_from_within(..);
    p
});

/// Where stream `idx`'s byte sequence starts in the pattern.
fn offset_for(idx: u32) -> usize {
    (idx as usize).wrapping_mul(104_729).wrapping_add(7_919) % PERIOD
}

fn pattern_at(idx: u32, pos: u64, len: usize) -> &'static [u8] {
    let at = (offset_for(idx) + (pos % PERIOD as u64) as usize) % PERIOD;
    &PATTERN[at..at + len]
}

fn data_err(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

// ------------------------------------------------------------------------------------------
// A uniform view of the four implementations
// ------------------------------------------------------------------------------------------

trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}
type BStream = Box<dyn Duplex>;

/// yamux 0.13 has no handle: a task owns the `Connection`, polls it continuously, serves open
/// requests from a channel and forwards inbound streams to another.
#[derive(Clone)]
struct YamuxHandle {
    open_tx: Sender<Sender<io::Result<yamux::Stream>>>,
    inbound_rx: Receiver<yamux::Stream>,
}

impl YamuxHandle {
    fn start(tcp: TcpStream, mode: yamux::Mode) -> (YamuxHandle, Task<io::Result<()>>) {
        let (open_tx, open_rx) = async_channel::unbounded();
        let (inbound_tx, inbound_rx) = async_channel::unbounded();
        let conn = yamux::Connection::new(tcp, yamux_config(), mode);
        let task = spawn(yamux_driver(conn, open_rx, inbound_tx));
        (
            YamuxHandle {
                open_tx,
                inbound_rx,
            },
            task,
        )
    }
    async fn open(&self) -> io::Result<yamux::Stream> {
        let (tx, rx) = async_channel::bounded(1);
        self.open_tx
            .send(tx)
            .await
            .map_err(|_| io::Error::other("yamux driver gone"))?;
        rx.recv()
            .await
            .map_err(|_| io::Error::other("yamux driver gone"))?
    }
    async fn accept(&self) -> io::Result<yamux::Stream> {
        self.inbound_rx
            .recv()
            .await
            .map_err(|_| io::Error::other("yamux connection ended"))
    }
}

fn yamux_err(e: yamux::ConnectionError) -> io::Error {
    io::Error::other(format!("yamux: {e}"))
}

async fn yamux_driver(
    mut conn: yamux::Connection<TcpStream>,
    open_rx: Receiver<Sender<io::Result<yamux::Stream>>>,
    inbound_tx: Sender<yamux::Stream>,
) -> io::Result<()> {
    let mut open_rx = Box::pin(open_rx);
    let mut pending: Option<Sender<io::Result<yamux::Stream>>> = None;
    let mut open_closed = false;
    let ended = future::poll_fn(|cx| loop {
        if pending.is_none() && !open_closed {
            match open_rx.poll_next(cx) {
                Poll::Ready(Some(req)) => pending = Some(req),
                Poll::Ready(None) => open_closed = true,
                Poll::Pending => {}
            }
        }
        if let Some(req) = &pending {
            if let Poll::Ready(res) = conn.poll_new_outbound(cx) {
                let _ = req.try_send(res.map_err(yamux_err));
                pending = None;
                continue;
            }
        }
        match conn.poll_next_inbound(cx) {
            Poll::Ready(Some(Ok(s))) => {
                let _ = inbound_tx.try_send(s);
                continue;
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(yamux_err(e)))),
            Poll::Ready(None) => return Poll::Ready(Some(Ok(()))),
            Poll::Pending => {}
        }
        if open_closed && pending.is_none() {
            // Every handle is gone (a handle holds the open sender and the inbound receiver
            // together): close the connection.
            return Poll::Ready(None);
        }
        return Poll::Pending;
    })
    .await;
    match ended {
        Some(result) => result,
        None => future::poll_fn(|cx| conn.poll_close(cx))
            .await
            .map_err(yamux_err),
    }
}

enum Endpoint {
    RawConnect(SocketAddr),
    RawListen(TcpListener),
    Smol(smolmux::Mux),
    Yamux(YamuxHandle),
    Pico(picomux::PicoMux),
}

impl Endpoint {
    async fn open(&self) -> io::Result<BStream> {
        Ok(match self {
            Endpoint::RawConnect(addr) => {
                let tcp = TcpStream::connect(*addr).await?;
                tcp.set_nodelay(true)?;
                Box::new(tcp)
            }
            Endpoint::RawListen(_) => unreachable!("raw listener does not open"),
            Endpoint::Smol(m) => Box::new(m.open(b"").await?),
            Endpoint::Yamux(y) => Box::new(y.open().await?),
            Endpoint::Pico(p) => Box::new(p.open(b"").await?),
        })
    }
    async fn accept(&self) -> io::Result<BStream> {
        Ok(match self {
            Endpoint::RawListen(l) => {
                let (tcp, _) = l.accept().await?;
                tcp.set_nodelay(true)?;
                Box::new(tcp)
            }
            Endpoint::RawConnect(_) => unreachable!("raw connector does not accept"),
            Endpoint::Smol(m) => Box::new(m.accept().await?),
            Endpoint::Yamux(y) => Box::new(y.accept().await?),
            Endpoint::Pico(p) => Box::new(p.accept().await?),
        })
    }
}

/// One client/server pair of one implementation; both ends in this process.
struct Session {
    imp: Impl,
    client: Endpoint,
    server: Endpoint,
    drivers: Vec<(&'static str, Task<io::Result<()>>)>,
}

async fn tcp_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (c, a) = future::zip(TcpStream::connect(addr), listener.accept()).await;
    let (c, (a, _)) = (c?, a?);
    c.set_nodelay(true)?;
    a.set_nodelay(true)?;
    Ok((c, a))
}

impl Session {
    async fn new(imp: Impl) -> io::Result<Session> {
        match imp {
            Impl::Raw => {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                Ok(Session {
                    imp,
                    client: Endpoint::RawConnect(addr),
                    server: Endpoint::RawListen(listener),
                    drivers: vec![],
                })
            }
            Impl::Smolmux => {
                let (c, a) = tcp_pair().await?;
                let (cm, cd) = smolmux::Mux::new(c.clone(), c, smolmux_config());
                let (sm, sd) = smolmux::Mux::new(a.clone(), a, smolmux_config());
                Ok(Session {
                    imp,
                    client: Endpoint::Smol(cm),
                    server: Endpoint::Smol(sm),
                    drivers: vec![("client driver", spawn(cd)), ("server driver", spawn(sd))],
                })
            }
            Impl::Yamux => {
                let (c, a) = tcp_pair().await?;
                let (ch, cd) = YamuxHandle::start(c, yamux::Mode::Client);
                let (sh, sd) = YamuxHandle::start(a, yamux::Mode::Server);
                Ok(Session {
                    imp,
                    client: Endpoint::Yamux(ch),
                    server: Endpoint::Yamux(sh),
                    drivers: vec![("client driver", cd), ("server driver", sd)],
                })
            }
            Impl::Picomux => {
                let (c, a) = tcp_pair().await?;
                Ok(Session {
                    imp,
                    client: Endpoint::Pico(picomux::PicoMux::new(c.clone(), c)),
                    server: Endpoint::Pico(picomux::PicoMux::new(a.clone(), a)),
                    drivers: vec![],
                })
            }
        }
    }

    /// Diagnostic state for a hang report.
    fn debug_state(&self) -> String {
        match (&self.client, &self.server) {
            (Endpoint::Smol(c), Endpoint::Smol(s)) => format!(
                "client alive={} {:?}; server alive={} {:?}",
                c.is_alive(),
                c.stats(),
                s.is_alive(),
                s.stats()
            ),
            (Endpoint::Pico(c), Endpoint::Pico(s)) => {
                format!(
                    "client alive={}; server alive={}",
                    c.is_alive(),
                    s.is_alive()
                )
            }
            _ => String::new(),
        }
    }

    /// Ends the session gracefully, one side after the other, and checks that both drivers end
    /// cleanly: the client side shuts down first (smolmux: `Mux::close`; yamux: the handle is
    /// dropped, so its driver closes the connection; picomux and raw TCP: dropped), then the
    /// server side, which sees the connection end.
    async fn teardown(self) -> Result<(), String> {
        let Session {
            imp,
            client,
            server,
            mut drivers,
        } = self;
        let key = imp.key();
        let wait = |name: &'static str, d: Task<io::Result<()>>| async move {
            match with_timeout(Duration::from_secs(10), d).await {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => Err(format!(
                    "{key}: {name} ended with an error during teardown: {e}"
                )),
                None => Err(format!(
                    "{key}: {name} did not end within 10 s of the teardown"
                )),
            }
        };
        let server_driver = if drivers.len() == 2 {
            Some(drivers.pop().unwrap())
        } else {
            None
        };
        let client_driver = drivers.pop();
        match imp {
            Impl::Smolmux => {
                if let Endpoint::Smol(c) = &client {
                    match with_timeout(Duration::from_secs(10), c.close()).await {
                        Some(Ok(())) => {}
                        Some(Err(e)) => {
                            return Err(format!("{key}: client Mux::close failed: {e}"))
                        }
                        None => {
                            return Err(format!(
                                "{key}: client Mux::close did not return within 10 s"
                            ))
                        }
                    }
                }
                drop(client);
                // The server's session ends when it reads the client's EOF.
                if let Some((name, d)) = server_driver {
                    wait(name, d).await?;
                }
                drop(server);
                if let Some((name, d)) = client_driver {
                    wait(name, d).await?;
                }
            }
            _ => {
                drop(client);
                if let Some((name, d)) = client_driver {
                    wait(name, d).await?;
                }
                if let Some((name, d)) = server_driver {
                    wait(name, d).await?;
                }
                drop(server);
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// Stream roles
// ------------------------------------------------------------------------------------------

async fn expect_eof(s: &mut BStream, what: &str) -> io::Result<()> {
    let mut b = [0u8; 64];
    match s.read(&mut b).await? {
        0 => Ok(()),
        n => Err(data_err(format!(
            "{what}: {n} unexpected bytes where EOF was expected"
        ))),
    }
}

/// A per-stream failure signal shared by a stream's two ends: the side that fails closes the
/// channel, and the other side, which might otherwise wait forever (a picomux writer blocks for
/// good once its peer has sent FIN), gives up as well. Only used when something already failed.
type Kill = (Sender<()>, Receiver<()>);

fn kill_signals(n: usize) -> Arc<Vec<Kill>> {
    Arc::new((0..n).map(|_| async_channel::bounded::<()>(1)).collect())
}

async fn killable<T>(
    kill: &Kill,
    f: impl Future<Output = io::Result<T>>,
    other_side: &str,
) -> io::Result<T> {
    let r = f
        .or(async {
            let _ = kill.1.recv().await;
            Err(io::Error::other(format!(
                "gave up: the {other_side} of this stream failed"
            )))
        })
        .await;
    if r.is_err() {
        kill.0.close();
    }
    r
}

/// Bulk opener: index, N bytes, wait for the ack, close, read EOF.
async fn bulk_send(s: &mut BStream, idx: u32, n: u64) -> io::Result<()> {
    s.write_all(&idx.to_le_bytes()).await?;
    let mut sent = 0u64;
    while sent < n {
        let len = (n - sent).min(CHUNK as u64) as usize;
        s.write_all(pattern_at(idx, sent, len)).await?;
        sent += len as u64;
    }
    s.flush().await?;
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).await?;
    if ack[0] != 0xAC {
        return Err(data_err(format!(
            "stream {idx}: bad ack byte {:#x}",
            ack[0]
        )));
    }
    s.close().await?;
    expect_eof(s, &format!("bulk sender {idx} after close")).await
}

/// Bulk acceptor: index, exactly N verified bytes, ack, EOF, close. Returns (index, done time).
async fn bulk_recv(
    s: &mut BStream,
    n: u64,
    idx_seen: &AtomicU64,
    kills: &[Kill],
) -> io::Result<(u32, Instant)> {
    let mut idxb = [0u8; 4];
    s.read_exact(&mut idxb).await?;
    let idx = u32::from_le_bytes(idxb);
    idx_seen.store(idx as u64, Ordering::Relaxed);
    let kill = kills
        .get(idx as usize)
        .ok_or_else(|| data_err(format!("bad stream index {idx}")))?;
    killable(kill, bulk_recv_body(s, idx, n), "sender").await
}

async fn bulk_recv_body(s: &mut BStream, idx: u32, n: u64) -> io::Result<(u32, Instant)> {
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    while got < n {
        let want = (n - got).min(CHUNK as u64) as usize;
        let k = s.read(&mut buf[..want]).await?;
        if k == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("stream {idx}: EOF after {got} of {n} bytes (data lost)"),
            ));
        }
        if buf[..k] != *pattern_at(idx, got, k) {
            return Err(data_err(format!(
                "stream {idx}: wrong bytes within {got}..{} (corruption, duplication or reordering)",
                got + k as u64
            )));
        }
        got += k as u64;
    }
    let done = Instant::now();
    s.write_all(&[0xAC]).await?;
    s.flush().await?;
    expect_eof(s, &format!("bulk receiver {idx} after {n} bytes")).await?;
    s.close().await?;
    Ok((idx, done))
}

/// Generic echo until EOF, then close.
async fn echo_serve(mut s: BStream) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).await?;
        s.flush().await?;
    }
    s.close().await
}

/// One 64-byte round trip with message number `k`; returns its RTT.
async fn echo_once(s: &mut BStream, k: u64) -> io::Result<Duration> {
    let msg = pattern_at(0xFFFF, k * MSG as u64, MSG);
    let mut reply = [0u8; MSG];
    let t = Instant::now();
    s.write_all(msg).await?;
    s.flush().await?;
    s.read_exact(&mut reply).await?;
    let rtt = t.elapsed();
    if reply[..] != *msg {
        return Err(data_err(format!("echo reply {k} differs from the message")));
    }
    Ok(rtt)
}

async fn echo_finish(s: &mut BStream) -> io::Result<()> {
    s.close().await?;
    expect_eof(s, "echo client after close").await
}

// ------------------------------------------------------------------------------------------
// Measurements
// ------------------------------------------------------------------------------------------

/// What one run of one scenario on one implementation produced.
#[derive(Default, Debug)]
struct Outcome {
    /// metric key -> value
    values: Vec<(&'static str, f64)>,
    /// Streams that failed (only tolerated for picomux).
    failed_streams: usize,
    /// Sample errors of failed streams.
    errors: Vec<String>,
    extra: BTreeMap<String, Value>,
}

type MResult = Result<Outcome, String>;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p / 100.0).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Scenarios 1, 2 and 7: `streams` streams move `total` bytes together.
async fn bulk(sess: Arc<Session>, streams: u32, total: u64) -> MResult {
    let per = total / streams as u64;
    let kills = kill_signals(streams as usize);
    let start = Instant::now();
    let server = {
        let (sess, kills) = (sess.clone(), kills.clone());
        spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..streams {
                let mut s = sess.server.accept().await?;
                let kills = kills.clone();
                tasks.push(spawn(async move {
                    let seen = AtomicU64::new(u64::MAX);
                    let r = bulk_recv(&mut s, per, &seen, &kills).await;
                    (seen.load(Ordering::Relaxed), r)
                }));
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await);
            }
            io::Result::Ok(out)
        })
    };
    let senders: Vec<_> = (0..streams)
        .map(|idx| {
            let (sess, kills) = (sess.clone(), kills.clone());
            spawn(async move {
                let send = async {
                    let mut s = sess.client.open().await?;
                    bulk_send(&mut s, idx, per).await
                };
                killable(&kills[idx as usize], send, "receiver").await
            })
        })
        .collect();
    let mut failed: HashSet<u64> = HashSet::new();
    let mut errors = Vec::new();
    for (idx, t) in senders.into_iter().enumerate() {
        if let Err(e) = t.await {
            failed.insert(idx as u64);
            errors.push(format!("sender {idx}: {e}"));
        }
    }
    let received = server.await.map_err(|e| format!("accept failed: {e}"))?;
    let mut last = start;
    let mut ok_bytes = 0u64;
    for (idx, r) in received {
        match r {
            Ok((_, done)) => {
                last = last.max(done);
                ok_bytes += per;
            }
            Err(e) => {
                failed.insert(idx);
                errors.push(format!("receiver of stream {idx}: {e}"));
            }
        }
    }
    let secs = (last - start).as_secs_f64().max(1e-9);
    let mut out = Outcome {
        failed_streams: failed.len(),
        errors,
        ..Default::default()
    };
    out.values.push(("mbps", ok_bytes as f64 / secs / 1e6));
    out.extra.insert("seconds".into(), json!(secs));
    out.extra.insert("verified_bytes".into(), json!(ok_bytes));
    Ok(out)
}

/// Scenario 3: sequential 64-byte echo round trips on one stream.
async fn rtt_idle(sess: Arc<Session>, count: usize) -> MResult {
    let server = {
        let sess = sess.clone();
        spawn(async move { echo_serve(sess.server.accept().await?).await })
    };
    let mut s = sess.client.open().await.map_err(|e| format!("open: {e}"))?;
    for k in 0..RTT_WARMUP {
        echo_once(&mut s, k as u64)
            .await
            .map_err(|e| format!("warm-up echo: {e}"))?;
    }
    let mut samples = Vec::with_capacity(count);
    for k in 0..count {
        samples.push(
            echo_once(&mut s, (RTT_WARMUP + k) as u64)
                .await
                .map_err(|e| format!("echo {k}: {e}"))?,
        );
    }
    echo_finish(&mut s)
        .await
        .map_err(|e| format!("closing the echo stream: {e}"))?;
    server.await.map_err(|e| format!("echo server: {e}"))?;
    samples.sort();
    let mut out = Outcome::default();
    out.values.push(("p50", us(percentile(&samples, 50.0))));
    out.values.push(("p99", us(percentile(&samples, 99.0))));
    out.extra.insert("samples".into(), json!(samples.len()));
    Ok(out)
}

/// Bulk receiver of scenario 4: its length is not known in advance, so the sender hands it over
/// (in process) once it has stopped; the receiver reads exactly that many bytes.
async fn bulk_recv_open_ended(s: &mut BStream, final_rx: Receiver<u64>) -> io::Result<u64> {
    let idx = 0u32;
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    let mut fin: Option<u64> = None;
    enum Ev {
        Read(io::Result<usize>),
        Final(u64),
    }
    loop {
        if let Some(f) = fin {
            if got == f {
                break;
            }
            if got > f {
                return Err(data_err(format!(
                    "load stream: {got} bytes received, {f} sent"
                )));
            }
        }
        let want = match fin {
            Some(f) => (f - got).min(CHUNK as u64) as usize,
            None => CHUNK,
        };
        let ev = if fin.is_none() {
            let read = async { Ev::Read(s.read(&mut buf[..want]).await) };
            let fin_wait = async { Ev::Final(final_rx.recv().await.unwrap_or(u64::MAX)) };
            read.or(fin_wait).await
        } else {
            Ev::Read(s.read(&mut buf[..want]).await)
        };
        match ev {
            Ev::Final(f) => fin = Some(f),
            Ev::Read(r) => {
                let k = r?;
                if k == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("load stream: EOF after {got} bytes (data lost)"),
                    ));
                }
                if buf[..k] != *pattern_at(idx, got, k) {
                    return Err(data_err(format!(
                        "load stream: wrong bytes within {got}..{}",
                        got + k as u64
                    )));
                }
                got += k as u64;
            }
        }
    }
    s.write_all(&[0xAC]).await?;
    s.flush().await?;
    expect_eof(s, "load receiver").await?;
    s.close().await?;
    Ok(got)
}

/// Scenario 4: echo RTT while another stream bulk-sends.
async fn rtt_loaded(sess: Arc<Session>, count: usize, probe_secs: f64) -> MResult {
    let (final_tx, final_rx) = async_channel::bounded::<u64>(1);
    let kills = kill_signals(1);
    let server = {
        let (sess, kills) = (sess.clone(), kills.clone());
        spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..2 {
                let mut s = sess.server.accept().await?;
                let (final_rx, kills) = (final_rx.clone(), kills.clone());
                tasks.push(spawn(async move {
                    let mut tag = [0u8; 4];
                    s.read_exact(&mut tag).await?;
                    match tag {
                        [0, 0, 0, 0] => {
                            killable(&kills[0], bulk_recv_open_ended(&mut s, final_rx), "sender")
                                .await
                                .map(Some)
                        }
                        [1, 0, 0, 0] => echo_serve(s).await.map(|_| None),
                        _ => Err(data_err(format!("bad stream tag {tag:?}"))),
                    }
                }));
            }
            let mut bulk_bytes = 0;
            for t in tasks {
                if let Some(n) = t.await? {
                    bulk_bytes = n;
                }
            }
            io::Result::Ok(bulk_bytes)
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let load_start = Instant::now();
    let sender = {
        let (sess, stop, kills) = (sess.clone(), stop.clone(), kills.clone());
        spawn(async move {
            let send = async {
                let mut s = sess.client.open().await?;
                s.write_all(&[0, 0, 0, 0]).await?;
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    s.write_all(pattern_at(0, sent, CHUNK)).await?;
                    sent += CHUNK as u64;
                }
                s.flush().await?;
                let _ = final_tx.send(sent).await;
                let mut ack = [0u8; 1];
                s.read_exact(&mut ack).await?;
                s.close().await?;
                expect_eof(&mut s, "load sender after close").await?;
                io::Result::Ok(sent)
            };
            killable(&kills[0], send, "receiver").await
        })
    };
    let probe = async {
        let mut s = sess.client.open().await?;
        s.write_all(&[1, 0, 0, 0]).await?;
        // Let the load reach a steady state, keeping the probe stream warm meanwhile.
        let warm_until = Instant::now() + Duration::from_millis(200);
        let mut k = 0u64;
        while Instant::now() < warm_until {
            echo_once(&mut s, k).await?;
            k += 1;
        }
        let mut samples = Vec::with_capacity(count);
        let t0 = Instant::now();
        while samples.len() < count && t0.elapsed().as_secs_f64() < probe_secs {
            samples.push(echo_once(&mut s, k).await?);
            k += 1;
        }
        echo_finish(&mut s).await?;
        io::Result::Ok(samples)
    };
    let probe_result = probe.await;
    stop.store(true, Ordering::Relaxed);
    let load_secs = load_start.elapsed().as_secs_f64();
    let sent = sender.await;
    let received = server.await;
    let mut out = Outcome::default();
    let mut samples = match probe_result {
        Ok(s) => s,
        Err(e) => return Err(format!("probe stream: {e}")),
    };
    match (&sent, &received) {
        (Ok(s), Ok(r)) if s == r => {
            out.extra
                .insert("load_mbps".into(), json!(*s as f64 / load_secs / 1e6));
        }
        _ => {
            out.failed_streams = 1;
            out.errors.push(format!(
                "load stream: sender {sent:?}, receiver {received:?}"
            ));
        }
    }
    if samples.is_empty() {
        return Err("no probe sample completed".into());
    }
    samples.sort();
    out.values.push(("p99", us(percentile(&samples, 99.0))));
    out.extra
        .insert("p50_us".into(), json!(us(percentile(&samples, 50.0))));
    out.extra.insert("samples".into(), json!(samples.len()));
    Ok(out)
}

/// Scenario 5: open + 64-byte echo + close, `OPEN_WORKERS` workers, `count` streams in all.
async fn open_close(sess: Arc<Session>, count: usize) -> MResult {
    let server = {
        let sess = sess.clone();
        spawn(async move {
            let mut tasks = Vec::with_capacity(count);
            for _ in 0..count {
                let s = sess.server.accept().await?;
                tasks.push(spawn(echo_serve(s)));
            }
            let mut errors = Vec::new();
            for t in tasks {
                if let Err(e) = t.await {
                    errors.push(format!("echo server: {e}"));
                }
            }
            io::Result::Ok(errors)
        })
    };
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..OPEN_WORKERS)
        .map(|_| {
            let (sess, next) = (sess.clone(), next.clone());
            spawn(async move {
                let mut errors = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= count {
                        return errors;
                    }
                    let r = async {
                        let mut s = sess.client.open().await?;
                        echo_once(&mut s, k as u64).await?;
                        echo_finish(&mut s).await
                    }
                    .await;
                    if let Err(e) = r {
                        errors.push(format!("stream {k}: {e}"));
                    }
                }
            })
        })
        .collect();
    let mut errors = Vec::new();
    for w in workers {
        errors.extend(w.await);
    }
    let secs = start.elapsed().as_secs_f64();
    let failed = errors.len();
    let server_errors = server.await.map_err(|e| format!("accept failed: {e}"))?;
    errors.extend(server_errors);
    let mut out = Outcome {
        failed_streams: failed.max(errors.len() - failed),
        errors,
        ..Default::default()
    };
    out.values.push(("streams_per_s", count as f64 / secs));
    Ok(out)
}

/// Scenario 6: heap bytes per idle stream (both ends).
async fn idle_memory(sess: Arc<Session>, k: usize) -> MResult {
    let mut client_streams: Vec<BStream> = Vec::with_capacity(k);
    let (held_tx, held_rx) = async_channel::bounded::<()>(1);
    // Let the session settle (first PINGs, lazily created state) before the baseline.
    Timer::after(Duration::from_millis(150)).await;
    let base = LIVE.load(Ordering::Relaxed);
    let server = {
        let sess = sess.clone();
        spawn(async move {
            let mut held: Vec<BStream> = Vec::with_capacity(k);
            for _ in 0..k {
                let mut s = sess.server.accept().await?;
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await?;
                s.write_all(&[2]).await?;
                s.flush().await?;
                held.push(s);
            }
            // Hold the streams until the measurement is taken.
            let _ = held_rx.recv().await;
            io::Result::Ok(held)
        })
    };
    for i in 0..k {
        let mut s = sess
            .client
            .open()
            .await
            .map_err(|e| format!("open {i}: {e}"))?;
        s.write_all(&[1])
            .await
            .map_err(|e| format!("stream {i}: {e}"))?;
        s.flush().await.map_err(|e| format!("stream {i}: {e}"))?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b)
            .await
            .map_err(|e| format!("stream {i}: {e}"))?;
        if b[0] != 2 {
            return Err(format!("stream {i}: bad handshake byte"));
        }
        client_streams.push(s);
    }
    Timer::after(Duration::from_millis(200)).await;
    let live = LIVE.load(Ordering::Relaxed);
    let _ = held_tx.send(()).await;
    let server_streams = server.await.map_err(|e| format!("accept side: {e}"))?;
    let per = (live - base) as f64 / k as f64;
    // Close everything, and see every close arrive, before the session is torn down.
    let mut all: Vec<BStream> = client_streams.into_iter().chain(server_streams).collect();
    for (i, s) in all.iter_mut().enumerate() {
        s.close()
            .await
            .map_err(|e| format!("closing idle stream {i}: {e}"))?;
    }
    for (i, s) in all.iter_mut().enumerate() {
        expect_eof(s, "idle stream")
            .await
            .map_err(|e| format!("idle stream {i}: {e}"))?;
    }
    drop(all);
    let mut out = Outcome::default();
    out.values.push(("bytes_per_stream", per));
    Ok(out)
}

/// Scenario 7, parent side: run scenario 2 in a child process and read its peak RSS.
fn peak_rss_child(imp: Impl, opts: &Opts) -> MResult {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = std::process::Command::new(exe)
        .arg("--child-rss")
        .arg(imp.key())
        .env("BENCH_BULK_BYTES", opts.bulk_bytes.to_string())
        .env("BENCH_TIMEOUT_SECS", opts.timeout.as_secs_f64().to_string())
        .output()
        .map_err(|e| format!("spawning the child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("CHILD_RESULT "));
    let Some(line) = line.filter(|_| out.status.success()) else {
        return Err(format!(
            "child for {} failed ({}): {}",
            imp.key(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    };
    let v: Value = serde_json::from_str(line).map_err(|e| format!("child output {line:?}: {e}"))?;
    let mut o = Outcome {
        failed_streams: v["failed_streams"].as_u64().unwrap_or(0) as usize,
        ..Default::default()
    };
    if let Some(errs) = v["errors"].as_array() {
        o.errors = errs
            .iter()
            .filter_map(|e| e.as_str().map(String::from))
            .collect();
    }
    o.values.push((
        "peak_rss_mb",
        v["vmhwm_kb"].as_f64().unwrap_or(f64::NAN) * 1024.0 / 1e6,
    ));
    o.extra.insert(
        "baseline_rss_mb".into(),
        json!(v["baseline_rss_kb"].as_f64().unwrap_or(f64::NAN) * 1024.0 / 1e6),
    );
    o.extra.insert("mbps".into(), v["mbps"].clone());
    Ok(o)
}

fn proc_status_kb(field: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Scenario 7, child side.
fn child_main(imp_name: &str) -> ! {
    let imp = Impl::parse(imp_name).unwrap_or_else(|| {
        eprintln!("unknown implementation {imp_name}");
        std::process::exit(2)
    });
    let opts = Opts::from_env();
    start_executor();
    LazyLock::force(&PATTERN);
    let baseline = proc_status_kb("VmRSS:").unwrap_or(f64::NAN);
    let timeout = opts.timeout;
    let total = opts.bulk_bytes;
    let r = block(async move {
        let sess = Arc::new(Session::new(imp).await.map_err(|e| format!("setup: {e}"))?);
        let r = with_timeout(timeout, bulk(sess.clone(), BULK_STREAMS, total)).await;
        let r = match r {
            Some(r) => r?,
            None => {
                return Err(format!(
                    "timed out after {timeout:?}: {}",
                    sess.debug_state()
                ))
            }
        };
        match Arc::try_unwrap(sess) {
            Ok(s) => s.teardown().await?,
            Err(_) => return Err("session still in use after the run".into()),
        }
        Ok(r)
    });
    match r {
        Ok(o) => {
            if o.failed_streams > 0 && !imp.failures_tolerated() {
                eprintln!("{} stream(s) failed: {:?}", o.failed_streams, o.errors);
                std::process::exit(1);
            }
            let hwm = proc_status_kb("VmHWM:").unwrap_or(f64::NAN);
            println!(
                "CHILD_RESULT {}",
                json!({
                    "vmhwm_kb": hwm,
                    "baseline_rss_kb": baseline,
                    "mbps": o.values[0].1,
                    "failed_streams": o.failed_streams,
                    "errors": o.errors,
                })
            );
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}

/// Runs one in-process measurement: a fresh session, the scenario under a time limit, a clean
/// teardown.
fn measure<F, Fut>(imp: Impl, timeout: Duration, body: F) -> MResult
where
    F: FnOnce(Arc<Session>) -> Fut + Send + 'static,
    Fut: Future<Output = MResult> + Send + 'static,
{
    block(async move {
        let sess = Arc::new(
            Session::new(imp)
                .await
                .map_err(|e| format!("session setup: {e}"))?,
        );
        let r = match with_timeout(timeout, body(sess.clone())).await {
            Some(r) => r,
            None => {
                // Leave the session and its tasks where they are: reporting matters more.
                let state = sess.debug_state();
                std::mem::forget(sess);
                return Err(format!("HANG: did not finish within {timeout:?}. {state}"));
            }
        };
        // Give detached per-stream tasks a moment to drop their session handles.
        let mut sess = sess;
        for _ in 0..200 {
            match Arc::try_unwrap(sess) {
                Ok(s) => {
                    return match r {
                        Ok(o) => s.teardown().await.map(|_| o),
                        Err(e) => Err(e),
                    };
                }
                Err(back) => {
                    sess = back;
                    Timer::after(Duration::from_millis(10)).await;
                }
            }
        }
        r.and(Err(
            "session still in use 2 s after the scenario ended".into()
        ))
    })
}

// ------------------------------------------------------------------------------------------
// Reporting
// ------------------------------------------------------------------------------------------

struct Metric {
    key: &'static str,
    scenario: u8,
    value_key: &'static str,
    label: &'static str,
    unit: &'static str,
    lower_is_better: bool,
}

const METRICS: &[Metric] = &[
    Metric {
        key: "s1_bulk_1",
        scenario: 1,
        value_key: "mbps",
        label: "1. bulk, 1 stream (MB/s, higher is better)",
        unit: "MB/s",
        lower_is_better: false,
    },
    Metric {
        key: "s2_bulk_32",
        scenario: 2,
        value_key: "mbps",
        label: "2. bulk, 32 streams (MB/s, higher is better)",
        unit: "MB/s",
        lower_is_better: false,
    },
    Metric {
        key: "s3_rtt_p50",
        scenario: 3,
        value_key: "p50",
        label: "3. 64 B echo RTT p50 (µs, lower is better)",
        unit: "µs",
        lower_is_better: true,
    },
    Metric {
        key: "s3_rtt_p99",
        scenario: 3,
        value_key: "p99",
        label: "3. 64 B echo RTT p99 (µs, lower is better)",
        unit: "µs",
        lower_is_better: true,
    },
    Metric {
        key: "s4_rtt_loaded_p99",
        scenario: 4,
        value_key: "p99",
        label: "4. 64 B echo RTT p99 under bulk load (µs, lower is better)",
        unit: "µs",
        lower_is_better: true,
    },
    Metric {
        key: "s5_open_close",
        scenario: 5,
        value_key: "streams_per_s",
        label: "5. open + echo + close, 64 workers (streams/s, higher is better)",
        unit: "streams/s",
        lower_is_better: false,
    },
    Metric {
        key: "s6_idle_mem",
        scenario: 6,
        value_key: "bytes_per_stream",
        label: "6. heap per idle stream, both ends (bytes, lower is better)",
        unit: "bytes",
        lower_is_better: true,
    },
    Metric {
        key: "s7_peak_rss",
        scenario: 7,
        value_key: "peak_rss_mb",
        label: "7. peak RSS, 32-stream bulk in a child (MB, lower is better)",
        unit: "MB",
        lower_is_better: true,
    },
];

#[derive(Default)]
struct Cell {
    runs: Vec<f64>,
    failures: Vec<String>,
    failed_streams: usize,
    runs_with_lost_streams: usize,
    stream_errors: Vec<String>,
    extras: Vec<BTreeMap<String, Value>>,
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        let s = format!("{:.0}", v);
        // thousands separators
        let (neg, digits) = s
            .strip_prefix('-')
            .map_or((false, s.as_str()), |d| (true, d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if neg {
            format!("-{out}")
        } else {
            out
        }
    } else if v.abs() >= 10.0 {
        format!("{:.1}", v)
    } else {
        format!("{:.2}", v)
    }
}

fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn impl_color(imp: Impl) -> &'static str {
    match imp {
        Impl::Raw => "#7f7f7f",
        Impl::Smolmux => "#1f77b4",
        Impl::Yamux => "#ff7f0e",
        Impl::Picomux => "#2ca02c",
    }
}

/// A labelled group of bars, one per implementation (`None`: no value, drawn as "fail").
type BarGroup<'a> = (&'a str, Vec<(Impl, Option<f64>)>);

/// A bar-chart panel: groups of bars, one bar per implementation.
#[allow(clippy::too_many_arguments)]
fn svg_panel(
    svg: &mut String,
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
    title: &str,
    unit: &str,
    groups: &[BarGroup],
) {
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="13" font-weight="bold" text-anchor="middle">{}</text>"##,
        x0 + w / 2.0,
        y0 - 8.0,
        xml_escape(title)
    );
    let max = groups
        .iter()
        .flat_map(|(_, bars)| bars.iter().filter_map(|(_, v)| *v))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let max = if max <= 0.0 { 1.0 } else { max };
    // nice tick step
    let raw_step = max / 5.0;
    let mag = 10f64.powf(raw_step.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw_step)
        .unwrap_or(raw_step);
    // Headroom above the tallest bar for its value label.
    let top = (max * 1.08 / step).ceil() * step;
    let (px, pw, ph) = (x0 + 60.0, w - 70.0, h - 50.0);
    let y_of = |v: f64| y0 + ph - v / top * ph;
    let mut t = 0.0;
    while t <= top + step * 0.01 {
        let y = y_of(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e0e0e0"/>"##,
            px + pw
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            px - 5.0,
            y + 4.0,
            fmt_num(t)
        );
        t += step;
    }
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" transform="rotate(-90 {:.1} {:.1})">{}</text>"##,
        x0 + 12.0,
        y0 + ph / 2.0,
        x0 + 12.0,
        y0 + ph / 2.0,
        xml_escape(unit)
    );
    let _ = writeln!(
        svg,
        r##"<line x1="{px:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        y0 + ph,
        px + pw,
        y0 + ph
    );
    let gw = pw / groups.len().max(1) as f64;
    for (gi, (label, bars)) in groups.iter().enumerate() {
        let gx = px + gi as f64 * gw;
        let bw = (gw * 0.8) / bars.len().max(1) as f64;
        for (bi, (imp, v)) in bars.iter().enumerate() {
            let bx = gx + gw * 0.1 + bi as f64 * bw;
            match v {
                Some(v) if v.is_finite() => {
                    let y = y_of(*v);
                    let _ = writeln!(
                        svg,
                        r##"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {} {}</title></rect>"##,
                        bx + 2.0,
                        bw - 4.0,
                        y0 + ph - y,
                        impl_color(*imp),
                        imp.title(),
                        fmt_num(*v),
                        xml_escape(unit)
                    );
                    let _ = writeln!(
                        svg,
                        r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"##,
                        bx + bw / 2.0,
                        y - 3.0,
                        fmt_num(*v)
                    );
                }
                _ => {
                    let _ = writeln!(
                        svg,
                        r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#c00">fail</text>"##,
                        bx + bw / 2.0,
                        y0 + ph - 3.0
                    );
                }
            }
        }
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"##,
            gx + gw / 2.0,
            y0 + ph + 18.0,
            xml_escape(label)
        );
    }
}

fn write_svg(
    path: &std::path::Path,
    impls: &[Impl],
    cells: &BTreeMap<(&'static str, Impl), Cell>,
    subtitle: &str,
) -> io::Result<()> {
    let med = |key: &str, imp: Impl| {
        cells
            .iter()
            .find(|((k, i), _)| *k == key && *i == imp)
            .and_then(|(_, c)| median(&c.runs))
    };
    let bars = |key: &str| impls.iter().map(|&i| (i, med(key, i))).collect::<Vec<_>>();
    let (w, h) = (980.0, 440.0);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"##
    );
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="24" font-size="16" font-weight="bold" text-anchor="middle">smolmux vs raw TCP, yamux and picomux over loopback TCP (medians)</text>"##,
        w / 2.0
    );
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="42" font-size="11" text-anchor="middle" fill="#555">{}</text>"##,
        w / 2.0,
        xml_escape(subtitle)
    );
    svg_panel(
        &mut svg,
        20.0,
        90.0,
        560.0,
        300.0,
        "Bulk throughput, MB/s (higher is better)",
        "MB/s",
        &[
            ("1 stream", bars("s1_bulk_1")),
            ("32 streams", bars("s2_bulk_32")),
        ],
    );
    svg_panel(
        &mut svg,
        610.0,
        90.0,
        350.0,
        300.0,
        "64 B echo RTT p99, µs (lower is better)",
        "µs",
        &[
            ("under bulk load (4)", bars("s4_rtt_loaded_p99")),
            ("idle (3)", bars("s3_rtt_p99")),
        ],
    );
    // legend
    let mut lx = 200.0;
    for &imp in impls {
        let _ = writeln!(
            svg,
            r##"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{}"/>"##,
            h - 22.0,
            impl_color(imp)
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="12">{}</text>"##,
            lx + 16.0,
            h - 12.0,
            imp.title()
        );
        lx += 150.0;
    }
    let _ = writeln!(svg, "</svg>");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, svg)
}

// ------------------------------------------------------------------------------------------
// Main
// ------------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child-rss") {
        let name = args.get(pos + 1).cloned().unwrap_or_default();
        child_main(&name);
    }
    let opts = Opts::from_env();
    let wall = Instant::now();
    start_executor();
    LazyLock::force(&PATTERN);

    let date = utc_now();
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpu = cpu_model();
    println!("# smolmux comparative benchmark");
    println!();
    println!("- date: {date}; nproc {nproc}; CPU: {cpu}");
    println!(
        "- runtime: one smol::Executor on {EXECUTOR_THREADS} threads for every implementation (picomux also runs its own tasks on smolscale's threads); TCP_NODELAY on every socket; loopback 127.0.0.1"
    );
    println!(
        "- runs per scenario: {} (BENCH_RUNS), implementations interleaved, medians shown; implementations: {} (BENCH_ONLY); scenarios: {:?} (BENCH_SCENARIOS)",
        opts.runs,
        opts.impls.iter().map(|i| i.key()).collect::<Vec<_>>().join(","),
        opts.scenarios
    );
    println!(
        "- bulk: {} bytes ({:.0} MiB; BENCH_BULK_BYTES) in {} KiB writes, 32-stream runs {} bytes per stream; RTT: {} round trips after {RTT_WARMUP} warm-up (BENCH_RTT_COUNT); under load: up to {} round trips or {} s (BENCH_PROBE_SECS) after 200 ms of load; open/close: {} streams (BENCH_OPEN_COUNT) by {OPEN_WORKERS} workers; idle memory: {} streams (BENCH_IDLE_STREAMS); time limit per measurement {:?} (BENCH_TIMEOUT_SECS)",
        opts.bulk_bytes,
        opts.bulk_bytes as f64 / (1u64 << 20) as f64,
        CHUNK >> 10,
        opts.bulk_bytes / BULK_STREAMS as u64,
        opts.rtt_count,
        opts.rtt_count,
        opts.probe_secs,
        opts.open_count,
        opts.idle_streams,
        opts.timeout
    );
    println!("- configs: smolmux Config::default(); yamux Config::default() with max_num_streams 4096; picomux defaults");
    println!("- units: MB = 10^6 bytes; every transferred byte is verified by its receiver");
    println!();

    let mut cells: BTreeMap<(&'static str, Impl), Cell> = BTreeMap::new();
    let mut fatal: Vec<String> = Vec::new();

    for &scenario in &opts.scenarios {
        let metrics: Vec<&Metric> = METRICS.iter().filter(|m| m.scenario == scenario).collect();
        let t_scenario = Instant::now();
        // Run 0 is an unreported warm-up (the first session of each implementation in a process
        // is markedly slower: heap growth, first-touch page faults); it is still verified, and a
        // failure in it counts. Scenario 7 starts a fresh process each time, so it has none.
        let first = if scenario == 7 { 1 } else { 0 };
        for run in first..=opts.runs {
            for &imp in &opts.impls {
                let t = Instant::now();
                let o = opts.clone();
                let result: MResult = match scenario {
                    1 => measure(imp, o.timeout, move |s| bulk(s, 1, o.bulk_bytes)),
                    2 => measure(imp, o.timeout, move |s| bulk(s, BULK_STREAMS, o.bulk_bytes)),
                    3 => measure(imp, o.timeout, move |s| rtt_idle(s, o.rtt_count)),
                    4 => measure(imp, o.timeout, move |s| {
                        rtt_loaded(s, o.rtt_count, o.probe_secs)
                    }),
                    5 => measure(imp, o.timeout, move |s| open_close(s, o.open_count)),
                    6 => measure(imp, o.timeout, move |s| idle_memory(s, o.idle_streams)),
                    7 => peak_rss_child(imp, &o),
                    _ => unreachable!(),
                };
                let took = t.elapsed().as_secs_f64();
                let run_label = if run == 0 {
                    "warm-up".to_string()
                } else {
                    format!("run {run}/{}", opts.runs)
                };
                match result {
                    Ok(out)
                        if run == 0 && (out.failed_streams == 0 || imp.failures_tolerated()) =>
                    {
                        eprintln!("  [scenario {scenario} {run_label} {:<8}] done ({took:.1} s, not reported){}", imp.key(),
                            if out.failed_streams > 0 { format!("; note: {} stream(s) failed", out.failed_streams) } else { String::new() });
                    }
                    Ok(out) => {
                        let lost = out.failed_streams;
                        let mut shown = Vec::new();
                        for m in &metrics {
                            let v = out
                                .values
                                .iter()
                                .find(|(k, _)| *k == m.value_key)
                                .map(|(_, v)| *v)
                                .unwrap_or(f64::NAN);
                            shown.push(format!("{}={}", m.value_key, fmt_num(v)));
                            let cell = cells.entry((m.key, imp)).or_default();
                            if run > 0 {
                                cell.runs.push(v);
                                cell.extras.push(out.extra.clone());
                            }
                            if lost > 0 && run > 0 {
                                cell.failed_streams += lost;
                                cell.runs_with_lost_streams += 1;
                                cell.stream_errors
                                    .extend(out.errors.iter().take(3).cloned());
                            }
                        }
                        let extra = if out.extra.is_empty() {
                            String::new()
                        } else {
                            format!(
                                " {}",
                                Value::from(
                                    out.extra
                                        .clone()
                                        .into_iter()
                                        .collect::<serde_json::Map<_, _>>()
                                )
                            )
                        };
                        eprintln!(
                            "  [scenario {scenario} {run_label} {:<8}] {} ({took:.1} s){extra}",
                            imp.key(),
                            shown.join(" ")
                        );
                        if lost > 0 {
                            if imp.failures_tolerated() {
                                eprintln!(
                                    "    note: {} lost data / failed in {lost} stream(s): {:?}",
                                    imp.key(),
                                    out.errors.iter().take(3).collect::<Vec<_>>()
                                );
                            } else {
                                let msg = format!("scenario {scenario} {run_label} {}: {lost} stream(s) failed: {:?}", imp.key(), out.errors.iter().take(5).collect::<Vec<_>>());
                                eprintln!("    FAILURE: {msg}");
                                fatal.push(msg);
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("  [scenario {scenario} {run_label} {:<8}] FAILED after {took:.1} s: {e}", imp.key());
                        for m in &metrics {
                            cells
                                .entry((m.key, imp))
                                .or_default()
                                .failures
                                .push(e.clone());
                        }
                        if !imp.failures_tolerated() {
                            fatal.push(format!(
                                "scenario {scenario} {run_label} {}: {e}",
                                imp.key()
                            ));
                        }
                    }
                }
            }
        }
        eprintln!(
            "scenario {scenario} done in {:.1} s",
            t_scenario.elapsed().as_secs_f64()
        );
    }

    // ---- table ----
    let mut table = String::new();
    let _ = write!(table, "| scenario |");
    for imp in &opts.impls {
        let _ = write!(table, " {} |", imp.title());
    }
    let _ = writeln!(table);
    let _ = write!(table, "|---|");
    for _ in &opts.impls {
        let _ = write!(table, "---:|");
    }
    let _ = writeln!(table);
    let mut notes: Vec<String> = Vec::new();
    let mut json_metrics = Vec::new();
    for m in METRICS
        .iter()
        .filter(|m| opts.scenarios.contains(&m.scenario))
    {
        let raw_med = cells.get(&(m.key, Impl::Raw)).and_then(|c| median(&c.runs));
        let _ = write!(table, "| {} |", m.label);
        let mut jm = serde_json::Map::new();
        for &imp in &opts.impls {
            let cell = cells.get(&(m.key, imp));
            let med = cell.and_then(|c| median(&c.runs));
            let ratio = match (med, raw_med) {
                (Some(v), Some(r)) if r != 0.0 && v.is_finite() && r.is_finite() => Some(v / r),
                _ => None,
            };
            let mut text = match (med, ratio) {
                (Some(v), Some(r)) => format!("{} ({:.2}×)", fmt_num(v), r),
                (Some(v), None) => fmt_num(v),
                (None, _) => "FAIL".into(),
            };
            if let Some(c) = cell {
                if !c.failures.is_empty() {
                    text.push_str(&format!(
                        " ({}/{} runs failed)",
                        c.failures.len(),
                        c.failures.len() + c.runs.len()
                    ));
                    notes.push(format!(
                        "{} / {}: {} run(s) failed, e.g. {}",
                        m.key,
                        imp.title(),
                        c.failures.len(),
                        c.failures[0]
                    ));
                }
                if c.failed_streams > 0 {
                    text.push_str(" †");
                    notes.push(format!(
                        "{} / {}: lost data in {} stream(s) over {} of {} runs (e.g. {})",
                        m.key,
                        imp.title(),
                        c.failed_streams,
                        c.runs_with_lost_streams,
                        c.runs.len(),
                        c.stream_errors.first().cloned().unwrap_or_default()
                    ));
                }
            }
            let _ = write!(table, " {text} |");
            jm.insert(
                imp.key().into(),
                json!({
                    "median": med,
                    "ratio_to_raw": ratio,
                    "runs": cell.map(|c| c.runs.clone()).unwrap_or_default(),
                    "failed_runs": cell.map(|c| c.failures.clone()).unwrap_or_default(),
                    "failed_streams": cell.map(|c| c.failed_streams).unwrap_or(0),
                    "stream_errors": cell.map(|c| c.stream_errors.clone()).unwrap_or_default(),
                    "extra": cell.map(|c| c.extras.clone()).unwrap_or_default(),
                }),
            );
        }
        let _ = writeln!(table);
        json_metrics.push(json!({
            "key": m.key,
            "scenario": m.scenario,
            "label": m.label,
            "unit": m.unit,
            "lower_is_better": m.lower_is_better,
            "results": jm,
        }));
    }
    let total = wall.elapsed().as_secs_f64();
    println!("{table}");
    println!("Cells: median of {} runs (ratio to raw TCP's median in the same run). † = some streams failed verification (counted; fatal for every implementation but picomux).", opts.runs);
    for n in &notes {
        println!("- note: {n}");
    }
    println!();
    println!("total wall time: {total:.1} s");

    // ---- JSON ----
    // The repository's root: this bench is in testsuite/.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let json_path = root.join("target/bench/results.json");
    let doc = json!({
        "date": date,
        "machine": { "nproc": nproc, "cpu": cpu },
        "settings": {
            "bulk_bytes": opts.bulk_bytes,
            "runs": opts.runs,
            "rtt_count": opts.rtt_count,
            "rtt_warmup": RTT_WARMUP,
            "probe_secs": opts.probe_secs,
            "open_count": opts.open_count,
            "open_workers": OPEN_WORKERS,
            "idle_streams": opts.idle_streams,
            "bulk_streams": BULK_STREAMS,
            "write_size": CHUNK,
            "executor_threads": EXECUTOR_THREADS,
            "timeout_secs": opts.timeout.as_secs_f64(),
        },
        "implementations": opts.impls.iter().map(|i| json!({"key": i.key(), "title": i.title()})).collect::<Vec<_>>(),
        "metrics": json_metrics,
        "failures": fatal,
        "wall_time_secs": total,
    });
    if let Err(e) = std::fs::create_dir_all(json_path.parent().unwrap())
        .and_then(|_| std::fs::write(&json_path, serde_json::to_string_pretty(&doc).unwrap()))
    {
        eprintln!("writing {}: {e}", json_path.display());
    } else {
        println!("results: {}", json_path.display());
    }
    // ---- SVG ----
    if opts.scenarios.iter().any(|s| [1, 2, 3, 4].contains(s)) {
        let svg_path = root.join("docs/bench.svg");
        let subtitle = format!(
            "{date}; {nproc} × {cpu}; median of {} runs; bulk {} MiB; 2-thread smol executor; generated by cargo bench -p smolmux-testsuite --bench compare",
            opts.runs,
            opts.bulk_bytes >> 20
        );
        match write_svg(&svg_path, &opts.impls, &cells, &subtitle) {
            Ok(()) => println!("plot: {}", svg_path.display()),
            Err(e) => eprintln!("writing {}: {e}", svg_path.display()),
        }
    }

    if !fatal.is_empty() {
        println!();
        println!(
            "FAILED: {} measurement(s) lost data, failed or hung:",
            fatal.len()
        );
        for f in &fatal {
            println!("- {f}");
        }
        // Hung tasks may still be running: leave without waiting for them.
        std::process::exit(1);
    }
    std::process::exit(0);
}
