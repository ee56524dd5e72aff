//! What idle sessions cost, counted by this binary's own global allocator: the heap that idle
//! sessions hold stays below a stated bound per connection pair, and comes back below it once a
//! burst of data is over and the sessions are quiet; and quiet sessions are not woken again
//! (their drivers are not polled) once they have given their memory back.
//!
//! The allocator counts the whole process, so this binary holds this one test only. No duration is
//! asserted: the wait for the memory to come back is bounded by a generous limit only.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use smol::Task;
use smolmux::{Config, Driver, Mux, Stream};
use support::{run, sleep, spawn, tcp_pair};

/// Live heap bytes: allocated minus freed, over the whole process.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged; the counter only watches.
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

/// Connection pairs held idle: enough that the costs shared by every session (each thread's
/// scratch read buffer, the executor's and the reactor's tables) hardly count per pair.
const PAIRS: usize = 100;
/// Bytes each pair moves in its burst, one way.
const BURST: usize = 1 << 20;
/// Heap per idle connection pair (both ends, one stream open on each, the test's own handles and
/// tasks included) that the sessions stay below when idle, and come back below after a burst.
/// Issue 15 asks for at most 16 KiB per pair (before it, an idle pair held 527 KiB); these pairs
/// measure about 7 KiB in a debug build, so a regression by a buffer of a few KiB per session
/// (a send chunk is 4 KiB at least) fails.
const IDLE_BOUND: f64 = 10.0 * 1024.0;
/// Longest wait for the memory to come back after the burst: generous, so that a busy machine
/// cannot fail the test; the sessions give their buffers back about a second after the burst.
const QUIET_LIMIT: Duration = Duration::from_secs(30);
/// A stretch of time in which quiet sessions must not be woken at all: longer than the period of
/// any timer that frees memory after a burst (a second for the read segments, half a second for
/// the send side's chunks), so a session that kept such a timer ticking would be caught.
const WATCH: Duration = Duration::from_millis(2500);

/// Polls of every session's driver, over the whole test.
static DRIVER_POLLS: AtomicUsize = AtomicUsize::new(0);

/// A driver whose polls are counted.
struct Counted(Driver);

impl Future for Counted {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        DRIVER_POLLS.fetch_add(1, Ordering::Relaxed);
        Pin::new(&mut self.0).poll(cx)
    }
}

/// The default settings, but PINGs far apart: an hour between keepalives is a wake-up the
/// test must not see.
fn config() -> Config {
    Config::default().ping_interval(Some(Duration::from_secs(3600)))
}

/// A connection pair with one stream open between its two ends.
struct Held {
    _muxes: (Mux, Mux),
    _drivers: (Task<io::Result<()>>, Task<io::Result<()>>),
    opener: Stream,
    acceptor: Stream,
}

async fn held_pair() -> Held {
    let (x, y) = tcp_pair().await;
    let (a, driver_a) = Mux::new(x.clone(), x, config());
    let (b, driver_b) = Mux::new(y.clone(), y, config());
    let drivers = (spawn(Counted(driver_a)), spawn(Counted(driver_b)));
    let (opened, accepted) = future::zip(a.open(b""), b.accept()).await;
    let (mut opener, mut acceptor) = (opened.unwrap(), accepted.unwrap());
    // A byte each way, so that both streams are fully set up.
    opener.write_all(b"?").await.unwrap();
    opener.flush().await.unwrap();
    let mut byte = [0];
    acceptor.read_exact(&mut byte).await.unwrap();
    acceptor.write_all(b"!").await.unwrap();
    acceptor.flush().await.unwrap();
    opener.read_exact(&mut byte).await.unwrap();
    Held {
        _muxes: (a, b),
        _drivers: drivers,
        opener,
        acceptor,
    }
}

/// Moves [`BURST`] bytes from the opener to the acceptor, which checks them.
async fn burst(held: &mut Held) {
    let data: Vec<u8> = (0..BURST).map(|i| (i % 251) as u8).collect();
    let send = async {
        held.opener.write_all(&data).await.unwrap();
        held.opener.flush().await.unwrap();
    };
    let receive = async {
        let mut got = vec![0; BURST];
        held.acceptor.read_exact(&mut got).await.unwrap();
        assert!(got == data, "the burst arrived corrupted");
    };
    future::zip(send, receive).await;
}

/// Heap bytes per pair above `base`.
fn per_pair(base: isize) -> f64 {
    (LIVE.load(Ordering::Relaxed) - base) as f64 / PAIRS as f64
}

/// Waits until the heap per pair above `base` is within [`IDLE_BOUND`], polling it (for at most
/// [`QUIET_LIMIT`] after `what`); the figure then.
async fn until_within_bound(base: isize, what: &str) -> f64 {
    let start = Instant::now();
    loop {
        let now = per_pair(base);
        if now <= IDLE_BOUND {
            return now;
        }
        assert!(
            start.elapsed() < QUIET_LIMIT,
            "{now:.0} bytes per connection pair {QUIET_LIMIT:?} after {what} (bound {IDLE_BOUND})"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn idle_sessions_hold_little_memory_and_give_a_bursts_buffers_back() {
    run(async {
        // A pair that moves data first, so that what every session shares exists before the
        // baseline.
        let mut warm = held_pair().await;
        burst(&mut warm).await;
        drop(warm);
        sleep(Duration::from_millis(200)).await;
        let base = LIVE.load(Ordering::Relaxed);

        let mut pairs = Vec::with_capacity(PAIRS);
        for _ in 0..PAIRS {
            pairs.push(held_pair().await);
        }
        // The set-up's few bytes leave each session a small send chunk for about a second.
        let idle = until_within_bound(base, "the set-up").await;
        eprintln!("idle: {idle:.0} bytes per connection pair");

        // Every pair moves a burst at once, so that every session holds its burst buffers.
        let bursts: Vec<_> = pairs
            .into_iter()
            .map(|mut held| {
                spawn(async move {
                    burst(&mut held).await;
                    held
                })
            })
            .collect();
        let mut pairs = Vec::with_capacity(PAIRS);
        for task in bursts {
            pairs.push(task.await);
        }
        let after = per_pair(base);
        eprintln!(
            "right after the burst: {:.0} bytes per connection pair",
            after
        );
        assert!(
            after > IDLE_BOUND,
            "the burst left only {after:.0} bytes per pair: it did not exercise the buffers"
        );

        let quiet = until_within_bound(base, "the burst").await;
        eprintln!("quiet after the burst: {quiet:.0} bytes per connection pair");

        // Quiet sessions stop being woken: the timers that free memory fire once after the
        // burst, and then a whole watch passes without a poll (a session ticking more often
        // than that never gets there).
        let start = Instant::now();
        loop {
            let polls = DRIVER_POLLS.load(Ordering::Relaxed);
            sleep(WATCH).await;
            let woken = DRIVER_POLLS.load(Ordering::Relaxed) - polls;
            if woken == 0 {
                break;
            }
            assert!(
                start.elapsed() < QUIET_LIMIT,
                "quiet sessions' drivers are still polled ({woken} times in the last {WATCH:?})"
            );
        }
        let still = per_pair(base);
        eprintln!("still quiet: {still:.0} bytes per connection pair");
        assert!(
            still <= IDLE_BOUND,
            "quiet connection pairs grew to {still:.0} bytes each (bound {IDLE_BOUND})"
        );
        drop(pairs);
    });
}
