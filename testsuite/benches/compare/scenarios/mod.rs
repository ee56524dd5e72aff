//! The measurements: one module per kind of scenario, each a function of a fresh session
//! returning an [`Outcome`], and [`run`], which picks one by its number.
//!
//! Scenarios 1-7 run over loopback; 8-10 through an emulated WAN link (`link.rs`), which the
//! caller sets up and passes in as the session's route; 11 holds many sessions over loopback.

mod bulk;
mod echo;
mod memory;
mod open_close;
mod sessions;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::bulk::bulk;
use self::echo::{rtt_idle, rtt_loaded};
use self::memory::idle_memory;
use self::open_close::open_close;
use self::sessions::idle_sessions;
use smol::Timer;

use crate::link::LinkParams;
use crate::peers::{Impl, Route, Session};
use crate::runtime::{block, with_timeout};
use crate::Opts;

/// Streams of scenario 2 (and 7).
pub(crate) const BULK_STREAMS: u32 = 32;
/// Concurrent workers of scenario 5.
pub(crate) const OPEN_WORKERS: usize = 64;
/// Unmeasured round trips before scenario 3 measures.
pub(crate) const RTT_WARMUP: usize = 200;

/// Streams of scenario 9 (WAN bulk over several streams).
pub(crate) const WAN_STREAMS: u32 = 8;

/// The loopback scenarios.
pub(crate) const LOOPBACK: std::ops::RangeInclusive<u8> = 1..=7;
/// The scenarios through an emulated WAN link.
pub(crate) const WAN: std::ops::RangeInclusive<u8> = 8..=10;
/// The scenarios of many sessions at once (not run unless asked for).
pub(crate) const SESSIONS: std::ops::RangeInclusive<u8> = 11..=11;

/// Scenarios 7 and 11 read the memory of the process they run in, so they always run in a child.
pub(crate) fn needs_own_process(scenario: u8) -> bool {
    scenario == 7 || SESSIONS.contains(&scenario)
}

/// Runs one measurement of `scenario` on `imp` in this process, along `route` (through `link`,
/// for the WAN scenarios). Scenario 7 expects to be the only thing this process has run.
pub(crate) fn run(
    scenario: u8,
    imp: Impl,
    opts: &Opts,
    route: Route,
    link: Option<LinkParams>,
) -> MResult {
    let o = opts.clone();
    let wan = || link.ok_or_else(|| format!("scenario {scenario} needs a link"));
    let wan_bytes = |l: LinkParams| (l.rate * o.wan_secs) as u64;
    match scenario {
        1 => measure(imp, route, o.timeout, move |s| bulk(s, 1, o.bulk_bytes)),
        2 | 7 => {
            let mut r = measure(imp, route, o.timeout, move |s| {
                bulk(s, BULK_STREAMS, o.bulk_bytes)
            });
            if scenario == 7 {
                if let Ok(out) = &mut r {
                    let mbps = out.values.remove("mbps");
                    out.extra.insert("mbps".into(), mbps.into());
                    out.values.insert("peak_rss_mb".into(), peak_rss_mb());
                }
            }
            r
        }
        3 => measure(imp, route, o.timeout, move |s| rtt_idle(s, o.rtt_count)),
        4 => measure(imp, route, o.timeout, move |s| {
            rtt_loaded(s, o.rtt_count, o.probe_secs, Duration::from_millis(200))
        }),
        5 => measure(imp, route, o.timeout, move |s| open_close(s, o.open_count)),
        6 => measure(imp, route, o.timeout, move |s| {
            idle_memory(s, o.idle_streams)
        }),
        8 => {
            let bytes = wan_bytes(wan()?);
            measure(imp, route, o.timeout, move |s| bulk(s, 1, bytes))
        }
        9 => {
            let bytes = wan_bytes(wan()?);
            measure(imp, route, o.timeout, move |s| bulk(s, WAN_STREAMS, bytes))
        }
        10 => {
            let link = wan()?;
            let warmup = Duration::from_secs_f64(o.wan_warmup_secs);
            let mut r = measure(imp, route, o.timeout, move |s| {
                rtt_loaded(s, usize::MAX, o.wan_probe_secs, warmup)
            });
            if let Ok(out) = &mut r {
                // The echo's wait beyond the path's own round trip, in milliseconds.
                let rtt_us = link.rtt.as_secs_f64() * 1e6;
                for (p, excess) in [("p50", "excess_p50_ms"), ("p99", "excess_p99_ms")] {
                    if let Some(v) = out.values.remove(p) {
                        out.values.insert(excess.into(), (v - rtt_us) / 1e3);
                    }
                }
            }
            r
        }
        11 => idle_sessions(imp, route, o.idle_sessions, o.burst_bytes, o.timeout),
        _ => Err(format!("no scenario {scenario}")),
    }
}

/// This process's peak resident set (VmHWM) in MB.
pub(crate) fn peak_rss_mb() -> f64 {
    proc_status_kb("VmHWM:").unwrap_or(f64::NAN) * 1024.0 / 1e6
}

pub(crate) fn proc_status_kb(field: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// What one run of one scenario on one implementation produced.
#[derive(Default, Debug, Serialize, Deserialize)]
pub(crate) struct Outcome {
    /// metric key -> value
    pub(crate) values: BTreeMap<String, f64>,
    /// Streams that failed (only tolerated for picomux).
    pub(crate) failed_streams: usize,
    /// Sample errors of failed streams.
    pub(crate) errors: Vec<String>,
    pub(crate) extra: BTreeMap<String, Value>,
}

pub(crate) type MResult = Result<Outcome, String>;

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p / 100.0).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Runs one in-process measurement: a fresh session, the scenario under a time limit, a clean
/// teardown.
fn measure<F, Fut>(imp: Impl, route: Route, timeout: Duration, body: F) -> MResult
where
    F: FnOnce(Arc<Session>) -> Fut + Send + 'static,
    Fut: Future<Output = MResult> + Send + 'static,
{
    block(async move {
        let sess = Arc::new(
            Session::new(imp, route)
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
