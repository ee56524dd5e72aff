//! Helpers shared by the integration tests: a per-test executor with a hang guard, loopback TCP
//! pairs of muxes for smol and async-std, data patterns, and assertion helpers.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod mock_peer;

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future::{self, FutureExt as _};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::{Executor, Task, Timer};
use smolmux::{Config, Driver, Mux, Stream};

/// Longest a test may run before the hang guard fails it.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

// ----- running a test -----

thread_local! {
    static EXECUTOR: RefCell<Option<Arc<Executor<'static>>>> = const { RefCell::new(None) };
}

/// Runs a smol test body on its own executor, driven by the test's thread and one helper thread
/// (so tasks really run in parallel), under the hang guard. Tasks still running when the body
/// returns are dropped with the executor.
pub fn run<F: Future<Output = ()>>(body: F) {
    let ex = Arc::new(Executor::new());
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let helper = {
        let ex = ex.clone();
        std::thread::Builder::new()
            .name("test-executor".into())
            .spawn(move || {
                EXECUTOR.with(|cell| *cell.borrow_mut() = Some(ex.clone()));
                // A panicking task re-panics where it is awaited; keep this thread serving.
                loop {
                    let served = catch_unwind(AssertUnwindSafe(|| {
                        smol::block_on(ex.run(async {
                            let _ = stopped.recv().await;
                        }))
                    }));
                    if served.is_ok() {
                        break;
                    }
                }
                EXECUTOR.with(|cell| *cell.borrow_mut() = None);
            })
            .expect("spawn executor thread")
    };
    EXECUTOR.with(|cell| *cell.borrow_mut() = Some(ex.clone()));
    let result = catch_unwind(AssertUnwindSafe(|| {
        smol::block_on(ex.run(Box::pin(hang_guard(body))))
    }));
    EXECUTOR.with(|cell| *cell.borrow_mut() = None);
    drop(stop);
    helper.join().expect("executor thread");
    drop(ex);
    if let Err(panic) = result {
        resume_unwind(panic);
    }
}

/// Spawns a task on the current test's executor (see [`run`]).
pub fn spawn<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Task<T> {
    EXECUTOR.with(|cell| {
        cell.borrow()
            .as_ref()
            .expect("support::spawn called outside support::run")
            .spawn(fut)
    })
}

/// Fails the test if `fut` does not finish within [`HANG_GUARD`].
pub async fn hang_guard<T>(fut: impl Future<Output = T>) -> T {
    fut.or(async {
        Timer::after(HANG_GUARD).await;
        panic!("hang guard: the test did not finish within {HANG_GUARD:?}");
    })
    .await
}

/// Runs `fut` for at most `limit`: `None` if it was still pending then (and it is dropped).
pub async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    async { Some(fut.await) }
        .or(async {
            Timer::after(limit).await;
            None
        })
        .await
}

pub async fn sleep(duration: Duration) {
    Timer::after(duration).await;
}

/// Polls `condition` every few milliseconds until it holds (the hang guard bounds the wait).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        if start.elapsed() > HANG_GUARD {
            panic!("condition never held: {what}");
        }
        Timer::after(Duration::from_millis(5)).await;
    }
}

/// Polls `fut` once and asserts that it is pending (so it is now waiting on the session).
pub async fn assert_pending<F: Future + Unpin>(fut: &mut F, what: &str) {
    assert!(
        future::poll_once(fut).await.is_none(),
        "{what} should be pending"
    );
}

// ----- loopback TCP and mux pairs -----

/// Two ends of a loopback TCP connection (smol).
pub async fn tcp_pair() -> (smol::net::TcpStream, smol::net::TcpStream) {
    let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) =
        future::zip(smol::net::TcpStream::connect(addr), listener.accept()).await;
    (client.unwrap(), server.unwrap().0)
}

/// Two connected muxes over loopback TCP with their drivers spawned on the test's executor.
pub struct Pair {
    /// The side that connected.
    pub a: Mux,
    /// The side that accepted the connection.
    pub b: Mux,
    pub driver_a: Task<io::Result<()>>,
    pub driver_b: Task<io::Result<()>>,
}

pub async fn smol_pair(config_a: Config, config_b: Config) -> Pair {
    let (x, y) = tcp_pair().await;
    let (a, driver_a) = Mux::new(x.clone(), x, config_a);
    let (b, driver_b) = Mux::new(y.clone(), y, config_b);
    Pair {
        a,
        b,
        driver_a: spawn(driver_a),
        driver_b: spawn(driver_b),
    }
}

pub async fn default_pair() -> Pair {
    smol_pair(Config::default(), Config::default()).await
}

/// Spawns a driver on async-std and returns its handle.
pub fn spawn_driver_async_std(driver: Driver) -> async_std::task::JoinHandle<io::Result<()>> {
    async_std::task::spawn(driver)
}

/// Two connected muxes over async-std loopback TCP, drivers spawned on async-std.
pub struct AsyncStdPair {
    pub a: Mux,
    pub b: Mux,
    pub driver_a: async_std::task::JoinHandle<io::Result<()>>,
    pub driver_b: async_std::task::JoinHandle<io::Result<()>>,
}

pub async fn async_std_pair(config_a: Config, config_b: Config) -> AsyncStdPair {
    let listener = async_std::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) =
        future::zip(async_std::net::TcpStream::connect(addr), listener.accept()).await;
    let (x, y) = (client.unwrap(), server.unwrap().0);
    let (a, driver_a) = Mux::new(x.clone(), x, config_a);
    let (b, driver_b) = Mux::new(y.clone(), y, config_b);
    AsyncStdPair {
        a,
        b,
        driver_a: spawn_driver_async_std(driver_a),
        driver_b: spawn_driver_async_std(driver_b),
    }
}

// ----- application helpers -----

/// Echoes one stream: copies everything read back, then half-closes.
pub async fn echo(stream: Stream) -> io::Result<u64> {
    let (reader, mut writer) = futures_lite::io::split(stream);
    let n = futures_lite::io::copy(reader, &mut writer).await?;
    writer.close().await?;
    Ok(n)
}

/// Accepts streams forever on the test's executor and echoes each one.
pub fn spawn_echo_server(mux: Mux) -> Task<()> {
    spawn(async move {
        while let Ok(stream) = mux.accept().await {
            spawn(echo(stream)).detach();
        }
    })
}

/// Writes `data`, half-closes, reads the reply to EOF.
pub async fn round_trip(stream: &mut Stream, data: &[u8]) -> io::Result<Vec<u8>> {
    stream.write_all(data).await?;
    stream.close().await?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await?;
    Ok(reply)
}

/// Deterministic pseudo-random bytes (xorshift), distinct for each seed.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A long byte stream, cheap to generate and to verify in a debug build: chunk `k` (of
/// [`PatternStream::CHUNK`] bytes) is a window of a fixed random table starting at an offset that
/// depends on `k`, with `k` itself written in its first 8 bytes, so every chunk is distinct and a
/// lost, repeated or reordered chunk is caught. Verification compares slices (memcmp).
pub struct PatternStream {
    table: Vec<u8>,
    chunk_index: u64,
    chunk: Vec<u8>,
    /// Bytes verified so far.
    pub verified: u64,
}

impl PatternStream {
    pub const CHUNK: usize = 64 << 10;
    const PERIOD: usize = 65_521; // prime

    pub fn new(seed: u64) -> Self {
        let table = pattern(seed, Self::PERIOD + Self::CHUNK);
        let mut this = PatternStream {
            table,
            chunk_index: u64::MAX,
            chunk: Vec::new(),
            verified: 0,
        };
        this.load(0);
        this
    }

    fn load(&mut self, k: u64) {
        if self.chunk_index == k {
            return;
        }
        let start = (k as usize).wrapping_mul(7_919) % Self::PERIOD;
        self.chunk.clear();
        self.chunk
            .extend_from_slice(&self.table[start..start + Self::CHUNK]);
        self.chunk[..8].copy_from_slice(&k.to_le_bytes());
        self.chunk_index = k;
    }

    /// The bytes of the stream at `[pos, pos + len)`, which must lie within one chunk.
    pub fn slice(&mut self, pos: u64, len: usize) -> &[u8] {
        let k = pos / Self::CHUNK as u64;
        let off = (pos % Self::CHUNK as u64) as usize;
        assert!(off + len <= Self::CHUNK, "slice crosses a chunk boundary");
        self.load(k);
        &self.chunk[off..off + len]
    }

    /// Checks that `data` is the next part of the stream.
    pub fn verify(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let pos = self.verified;
            let off = (pos % Self::CHUNK as u64) as usize;
            let n = data.len().min(Self::CHUNK - off);
            let expected = self.slice(pos, n);
            if expected != &data[..n] {
                let at = expected
                    .iter()
                    .zip(&data[..n])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                panic!(
                    "data mismatch at byte {} of the stream (chunk {})",
                    pos + at as u64,
                    pos / Self::CHUNK as u64
                );
            }
            self.verified += n as u64;
            data = &data[n..];
        }
    }
}

/// Writes `total` bytes of `PatternStream::new(seed)` to `stream`, starting at byte `from`, in
/// writes of at most 64 KiB.
pub async fn write_pattern(
    stream: &mut Stream,
    seed: u64,
    from: u64,
    total: u64,
) -> io::Result<()> {
    let mut source = PatternStream::new(seed);
    let mut pos = from;
    while pos < total {
        let off = (pos % PatternStream::CHUNK as u64) as usize;
        let n = ((PatternStream::CHUNK - off) as u64).min(total - pos) as usize;
        stream.write_all(source.slice(pos, n)).await?;
        pos += n as u64;
    }
    Ok(())
}

/// Reads `stream` to EOF, checking it against `PatternStream::new(seed)`; returns the length.
pub async fn read_pattern(stream: &mut Stream, seed: u64) -> io::Result<u64> {
    let mut check = PatternStream::new(seed);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(check.verified);
        }
        check.verify(&buf[..n]);
    }
}

/// Asserts that `result` failed with `kind` and a message containing `needle`.
#[track_caller]
pub fn assert_err<T: std::fmt::Debug>(
    result: io::Result<T>,
    kind: io::ErrorKind,
    needle: &str,
) -> io::Error {
    let err = match result {
        Ok(value) => panic!("expected a {kind:?} error containing {needle:?}, got Ok({value:?})"),
        Err(err) => err,
    };
    assert_eq!(err.kind(), kind, "unexpected error kind: {err}");
    assert!(
        err.to_string().contains(needle),
        "error {err:?} should mention {needle:?}"
    );
    err
}
