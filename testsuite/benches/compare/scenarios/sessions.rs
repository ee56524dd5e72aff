//! Scenario 11: what many idle connections cost. `n` connection pairs (raw TCP: one connection
//! each; a multiplexer: one session each, both ends in this process), one stream open on each
//! and idle: heap (the counting allocator) and resident memory per pair, and the CPU the idle
//! process burns; then every pair moves a burst through its stream, and the same figures 3 s
//! after the last burst ended.

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use serde_json::json;
use smol::Timer;

use super::{proc_status_kb, MResult, Outcome};
use crate::alloc::LIVE;
use crate::pattern::{data_err, pattern_at};
use crate::peers::{BStream, Impl, Route, Session};
use crate::roles::{expect_eof, CHUNK};
use crate::runtime::{block, spawn, with_timeout};

/// Bursts in flight at once: enough to keep both executor threads busy.
const PARALLEL_BURSTS: usize = 32;
/// How long the connections sit idle before the idle figures (the multiplexers' start-up PINGs
/// and anything freed on a timer a second after the set-up are over by then).
const SETTLE: Duration = Duration::from_millis(1500);
/// The window over which the idle process's CPU time is measured.
const CPU_WINDOW: Duration = Duration::from_secs(2);
/// How long after the last burst the "after" figures are taken.
const AFTER_BURST: Duration = Duration::from_secs(3);

/// One idle connection pair: the session (none for raw TCP, whose listener is not part of a
/// connection's cost) and its stream's two ends.
struct Held {
    session: Option<Session>,
    opener: BStream,
    acceptor: BStream,
}

async fn held_pair(imp: Impl, route: Route) -> io::Result<Held> {
    let session = Session::new(imp, route).await?;
    // A byte each way, so that both ends are fully set up. (yamux announces a stream with its
    // first data: the opener writes before the acceptor is known.)
    let open = async {
        let mut opener = session.client.open().await?;
        opener.write_all(b"?").await?;
        opener.flush().await?;
        io::Result::Ok(opener)
    };
    let (opened, accepted) = future::zip(open, session.server.accept()).await;
    let (mut opener, mut acceptor) = (opened?, accepted?);
    let mut byte = [0];
    acceptor.read_exact(&mut byte).await?;
    acceptor.write_all(b"!").await?;
    acceptor.flush().await?;
    opener.read_exact(&mut byte).await?;
    let session = (imp != Impl::Raw).then_some(session);
    Ok(Held {
        session,
        opener,
        acceptor,
    })
}

/// Pair `idx` moves `bytes` pattern bytes from the opener to the acceptor, which checks them and
/// answers with one byte; the stream stays open.
async fn burst(held: &mut Held, idx: u32, bytes: u64) -> io::Result<()> {
    let send = async {
        let mut sent = 0u64;
        while sent < bytes {
            let len = (bytes - sent).min(CHUNK as u64) as usize;
            held.opener.write_all(pattern_at(idx, sent, len)).await?;
            sent += len as u64;
        }
        held.opener.flush().await?;
        let mut ack = [0];
        held.opener.read_exact(&mut ack).await
    };
    let receive = async {
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        while got < bytes {
            let want = (bytes - got).min(CHUNK as u64) as usize;
            let k = held.acceptor.read(&mut buf[..want]).await?;
            if k == 0 {
                return Err(data_err(format!("pair {idx}: EOF after {got} bytes")));
            }
            if buf[..k] != *pattern_at(idx, got, k) {
                return Err(data_err(format!("pair {idx}: wrong bytes at {got}")));
            }
            got += k as u64;
        }
        held.acceptor.write_all(&[0xAC]).await?;
        held.acceptor.flush().await
    };
    let (sent, received) = future::zip(send, receive).await;
    received.and(sent)
}

/// The opener closes, the acceptor sees the end and closes, the opener sees the end.
async fn close_both_ways(opener: &mut BStream, acceptor: &mut BStream) -> io::Result<()> {
    opener.close().await?;
    expect_eof(acceptor, "acceptor").await?;
    acceptor.close().await?;
    expect_eof(opener, "opener").await
}

/// This process's CPU time (user + system) so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses; utime and stime are the
    // 14th and 15th fields, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
    Duration::from_millis(ticks * 10)
}

fn rss_bytes() -> f64 {
    proc_status_kb("VmRSS:").unwrap_or(f64::NAN) * 1024.0
}

/// Scenario 11 for `imp`: `n` pairs, each moving `bytes` in its burst, within `timeout`.
pub(crate) fn idle_sessions(
    imp: Impl,
    route: Route,
    n: usize,
    bytes: u64,
    timeout: Duration,
) -> MResult {
    block(async move {
        match with_timeout(timeout, measure(imp, route, n, bytes)).await {
            Some(r) => r,
            None => Err(format!("HANG: did not finish within {timeout:?}")),
        }
    })
}

async fn measure(imp: Impl, route: Route, n: usize, bytes: u64) -> MResult {
    let mut pairs: Vec<Held> = Vec::with_capacity(n);
    Timer::after(Duration::from_millis(100)).await;
    let (heap_base, rss_base) = (LIVE.load(Ordering::Relaxed), rss_bytes());
    let per_pair = |heap: isize, rss: f64| {
        (
            (heap - heap_base) as f64 / n as f64 / 1024.0,
            (rss - rss_base) / n as f64 / 1024.0,
        )
    };
    let t = Instant::now();
    for i in 0..n {
        let held = held_pair(imp, route)
            .await
            .map_err(|e| format!("setting up pair {i}: {e}"))?;
        pairs.push(held);
    }
    let setup_secs = t.elapsed().as_secs_f64();
    Timer::after(SETTLE).await;
    let cpu = cpu_time();
    Timer::after(CPU_WINDOW).await;
    let idle_cpu = (cpu_time() - cpu).as_secs_f64() / CPU_WINDOW.as_secs_f64();
    let (idle_heap, idle_rss) = per_pair(LIVE.load(Ordering::Relaxed), rss_bytes());

    // The bursts, PARALLEL_BURSTS at a time; each task hands its pair back.
    let t = Instant::now();
    let (work, results) = async_channel::unbounded::<(u32, Held)>();
    let (back, done) = async_channel::unbounded::<(u32, Held, io::Result<()>)>();
    for (idx, held) in pairs.drain(..).enumerate() {
        let _ = work.try_send((idx as u32, held));
    }
    work.close();
    for _ in 0..PARALLEL_BURSTS.min(n) {
        let (results, back) = (results.clone(), back.clone());
        spawn(async move {
            while let Ok((idx, mut held)) = results.recv().await {
                let r = burst(&mut held, idx, bytes).await;
                let _ = back.send((idx, held, r)).await;
            }
        })
        .detach();
    }
    drop(back);
    let mut errors = Vec::new();
    while let Ok((idx, held, r)) = done.recv().await {
        if let Err(e) = r {
            errors.push(format!("burst of pair {idx}: {e}"));
        }
        pairs.push(held);
    }
    let burst_secs = t.elapsed().as_secs_f64();
    let (burst_heap, _) = per_pair(LIVE.load(Ordering::Relaxed), rss_bytes());
    Timer::after(AFTER_BURST).await;
    let (after_heap, after_rss) = per_pair(LIVE.load(Ordering::Relaxed), rss_bytes());

    // Every stream closes both ways, then every session ends cleanly.
    let mut failed_streams = errors.len();
    for (idx, held) in pairs.into_iter().enumerate() {
        let Held {
            session,
            mut opener,
            mut acceptor,
        } = held;
        if let Err(e) = close_both_ways(&mut opener, &mut acceptor).await {
            failed_streams += 1;
            errors.push(format!("closing the stream of pair {idx}: {e}"));
            continue;
        }
        drop((opener, acceptor));
        if let Some(session) = session {
            if let Err(e) = session.teardown().await {
                failed_streams += 1;
                errors.push(e);
            }
        }
    }
    let mut out = Outcome {
        failed_streams,
        errors,
        ..Default::default()
    };
    for (key, value) in [
        ("idle_heap_kib", idle_heap),
        ("idle_rss_kib", idle_rss),
        ("after_heap_kib", after_heap),
        ("after_rss_kib", after_rss),
        ("idle_cpu_percent", idle_cpu * 100.0),
    ] {
        out.values.insert(key.into(), value);
    }
    out.extra.insert("pairs".into(), json!(n));
    out.extra.insert("setup_secs".into(), json!(setup_secs));
    out.extra.insert("burst_bytes".into(), json!(bytes));
    out.extra.insert("burst_secs".into(), json!(burst_secs));
    out.extra
        .insert("heap_kib_right_after_bursts".into(), json!(burst_heap));
    Ok(out)
}
