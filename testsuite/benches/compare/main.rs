//! Comparative benchmark: raw TCP, smolmux (in picomux, smux v2 and yamux mode), yamux 0.13,
//! picomux 0.1.18 and async_smux 0.4 (smux v1) over loopback TCP.
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
//! 7. peak RSS (VmHWM) of a child process (this binary re-executed) that runs scenario 2 once;
//! 11. (only when asked for, e.g. `BENCH_SCENARIOS=11`) `BENCH_IDLE_SESSIONS` connection pairs
//!     (raw TCP: connections; a multiplexer: sessions) with one idle stream each, in a child:
//!     heap and RSS per pair idle and 3 s after each pair moved `BENCH_BURST_BYTES` (4 MiB),
//!     and the idle process's CPU (see `scenarios/sessions.rs`).
//!
//! Environment: `BENCH_BULK_BYTES` (default 256 MiB), `BENCH_RUNS` (5), `BENCH_ONLY`
//! (e.g. `smolmux,raw`), `BENCH_SCENARIOS` (e.g. `1,3`), `BENCH_RTT_COUNT` (2,000),
//! `BENCH_OPEN_COUNT` (10,000), `BENCH_IDLE_STREAMS` (1,000), `BENCH_PROBE_SECS` (2),
//! `BENCH_TIMEOUT_SECS` (120, per measurement), `BENCH_IDLE_SESSIONS` (1,000; 10,000 needs
//! `ulimit -n` above 20,000), `BENCH_BURST_BYTES` (4 MiB).
//!
//! Output: a markdown table on stdout, `target/bench/results.json`, and the plots at the
//! repository's root: `docs/bench.svg` when a loopback scenario 1-4 ran, `docs/wan.svg` when a
//! WAN scenario 8-10 did.
//!
//! Layout: `peers/` puts the implementations behind one session type (`peers/yamux_handle.rs`
//! drives yamux, which has no handle of its own; `peers/async_smux_handle.rs` bridges async_smux's
//! tokio traits); `roles.rs` is what each end of a stream does;
//! `scenarios/` holds one module per kind of measurement; `report/` the table and the plot;
//! `runtime.rs`, `pattern.rs` and `alloc.rs` the executor, the verified data and the counting
//! allocator.
//!
//! Stream protocols (the same for every implementation):
//! - bulk: the opener writes a 4-byte stream index, then N pattern bytes, and reads a 1-byte ack;
//!   the acceptor reads the index and exactly N bytes (checking each), writes the ack and reads
//!   EOF; the opener closes after the ack and reads EOF; the acceptor closes after its EOF. No
//!   side closes while data is still owed to it, which keeps picomux's close race out of the way.
//! - echo: the opener writes 64-byte messages and reads each reply in full before the next; the
//!   acceptor echoes until EOF, then closes; the opener closes after its last reply and reads EOF.

mod alloc;
mod child;
mod link;
mod pattern;
mod peers;
mod report;
mod roles;
mod runtime;
mod scenarios;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::child::{child_main, run_in_child};
use crate::link::{parse_links, route_through, LinkParams};
use crate::pattern::PATTERN;
use crate::peers::{Impl, Route, ALL_IMPLS};
use crate::report::svg::{write_svg, write_wan_svg};
use crate::report::{cpu_model, fmt_num, median, utc_now, Cell, Metric, METRICS};
use crate::roles::CHUNK;
use crate::runtime::{start_executor, EXECUTOR_THREADS};
use crate::scenarios::{
    needs_own_process, MResult, BULK_STREAMS, LOOPBACK, OPEN_WORKERS, RTT_WARMUP, SESSIONS, WAN,
    WAN_STREAMS,
};

#[derive(Clone, Debug)]
pub(crate) struct Opts {
    pub(crate) bulk_bytes: u64,
    pub(crate) runs: usize,
    pub(crate) impls: Vec<Impl>,
    pub(crate) scenarios: Vec<u8>,
    pub(crate) rtt_count: usize,
    pub(crate) open_count: usize,
    pub(crate) idle_streams: usize,
    /// Scenario 11: connection pairs held, and the bytes each moves in its burst.
    pub(crate) idle_sessions: usize,
    pub(crate) burst_bytes: u64,
    pub(crate) probe_secs: f64,
    pub(crate) timeout: Duration,
    /// Every measurement in this process, after an unreported warm-up round, instead of each
    /// in a fresh child process.
    pub(crate) in_process: bool,
    /// A child process runs its measurement twice and reports the second.
    pub(crate) child_warmup: bool,
    pub(crate) links: Vec<LinkParams>,
    /// WAN bulk runs move this many seconds' worth of the link's rate.
    pub(crate) wan_secs: f64,
    pub(crate) wan_warmup_secs: f64,
    pub(crate) wan_probe_secs: f64,
}

pub(crate) fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.trim().replace('_', "").parse().unwrap_or_else(|_| {
            eprintln!("{name}={v:?} is not a number");
            std::process::exit(2)
        }),
        Err(_) => default,
    }
}

fn env_flag(name: &str) -> bool {
    env_num(name, 0u8) != 0
}

impl Opts {
    pub(crate) fn from_env() -> Opts {
        let impls = match std::env::var("BENCH_ONLY") {
            Ok(list) if !list.trim().is_empty() => {
                let mut v: Vec<Impl> = list
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| {
                        Impl::parse(s).unwrap_or_else(|| {
                            eprintln!("BENCH_ONLY: unknown implementation {s:?} (raw, smolmux, smolmux_smux2, smolmux_yamux, yamux, picomux, async_smux)");
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
                        Ok(n @ 1..=11) => n,
                        _ => {
                            eprintln!("BENCH_SCENARIOS: {s:?} is not a scenario number 1..=11");
                            std::process::exit(2)
                        }
                    })
                    .collect();
                v.sort();
                v.dedup();
                v
            }
            _ if env_flag("BENCH_WAN") => WAN.collect(),
            _ => LOOPBACK.collect(),
        };
        let bulk_bytes: u64 = env_num("BENCH_BULK_BYTES", 256u64 << 20);
        if bulk_bytes < BULK_STREAMS as u64 {
            eprintln!("BENCH_BULK_BYTES must be at least {BULK_STREAMS}");
            std::process::exit(2);
        }
        let links = std::env::var("BENCH_LINKS").unwrap_or_else(|_| DEFAULT_LINKS.into());
        let links = parse_links(&links).unwrap_or_else(|e| {
            eprintln!("BENCH_LINKS: {e}");
            std::process::exit(2)
        });
        Opts {
            bulk_bytes,
            runs: env_num("BENCH_RUNS", 5usize).max(1),
            impls,
            scenarios,
            rtt_count: env_num("BENCH_RTT_COUNT", 2000usize).max(1),
            open_count: env_num("BENCH_OPEN_COUNT", 10_000usize).max(1),
            idle_streams: env_num("BENCH_IDLE_STREAMS", 1000usize).max(1),
            idle_sessions: env_num("BENCH_IDLE_SESSIONS", 1000usize).max(1),
            burst_bytes: env_num("BENCH_BURST_BYTES", 4u64 << 20),
            probe_secs: env_num("BENCH_PROBE_SECS", 2.0f64),
            timeout: Duration::from_secs_f64(env_num("BENCH_TIMEOUT_SECS", 120.0f64)),
            in_process: env_flag("BENCH_IN_PROCESS"),
            child_warmup: env_flag("BENCH_CHILD_WARMUP"),
            links,
            wan_secs: env_num("BENCH_WAN_SECS", 4.0f64),
            wan_warmup_secs: env_num("BENCH_WAN_WARMUP_SECS", 3.0f64),
            wan_probe_secs: env_num("BENCH_WAN_PROBE_SECS", 8.0f64),
        }
    }
}

/// The two paths of issue 16: a continental and an intercontinental long fat pipe.
const DEFAULT_LINKS: &str = "50:200,150:1000";

/// One measurement, where the options say: in this process or in a child, over loopback or
/// through a fresh link.
fn execute(scenario: u8, imp: Impl, opts: &Opts, link: Option<LinkParams>) -> MResult {
    let (_link, route) = match link {
        Some(params) => {
            let (l, r) = route_through(params).map_err(|e| format!("starting the link: {e}"))?;
            (Some(l), r)
        }
        None => (None, Route::loopback()),
    };
    if opts.in_process && !needs_own_process(scenario) {
        scenarios::run(scenario, imp, opts, route, link)
    } else {
        run_in_child(scenario, imp, route, link)
    }
}

/// Where a metric's runs are kept: WAN metrics once per link.
pub(crate) fn cell_key(m: &Metric, link: Option<LinkParams>) -> String {
    match link {
        Some(l) => format!(
            "{}@{}ms_{}mbit",
            m.key,
            l.rtt.as_millis(),
            l.rate * 8.0 / 1e6
        ),
        None => m.key.to_string(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        child_main(&args[pos + 1..]);
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
    println!("- configs: smolmux Config::default(); smolmux (smux v2) and smolmux (yamux) the same with Protocol::SmuxV2 or Protocol::Yamux and Role::Client/Server; yamux Config::default() with max_num_streams 4096; picomux defaults; async_smux MuxBuilder defaults (no keep-alive), on the same executor through tokio-util compat");
    println!(
        "- isolation: {}",
        if opts.in_process {
            "every measurement in this process, after an unreported warm-up round (BENCH_IN_PROCESS=1)"
        } else if opts.child_warmup {
            "each measurement in a fresh child process, after one unreported warm-up in that child (BENCH_CHILD_WARMUP=1)"
        } else {
            "each measurement in a fresh child process, as a program of its own (BENCH_IN_PROCESS=1: all in one)"
        }
    );
    if opts.scenarios.iter().any(|s| WAN.contains(s)) {
        println!(
            "- WAN (scenarios 8-10, BENCH_WAN=1): links {} (BENCH_LINKS, RTT_MS:MBIT_PER_S); bulk: {} s of the link's rate (BENCH_WAN_SECS), {WAN_STREAMS} streams in scenario 9; echo beside bulk: {} s of load first (BENCH_WAN_WARMUP_SECS), then {} s of round trips (BENCH_WAN_PROBE_SECS)",
            opts.links.iter().map(|l| l.label()).collect::<Vec<_>>().join(", "),
            opts.wan_secs,
            opts.wan_warmup_secs,
            opts.wan_probe_secs
        );
    }
    if opts.scenarios.iter().any(|s| SESSIONS.contains(s)) {
        println!(
            "- idle sessions (scenario 11): {} connection pairs (BENCH_IDLE_SESSIONS), one stream open on each; bursts of {} bytes (BENCH_BURST_BYTES) per pair; KiB per pair, both ends",
            opts.idle_sessions, opts.burst_bytes
        );
    }
    println!("- units: MB = 10^6 bytes; every transferred byte is verified by its receiver");
    println!();

    let mut cells: BTreeMap<(String, Impl), Cell> = BTreeMap::new();
    let mut fatal: Vec<String> = Vec::new();

    let plan: Vec<(u8, Option<LinkParams>)> = opts
        .scenarios
        .iter()
        .flat_map(|&s| {
            let links: Vec<Option<LinkParams>> = if WAN.contains(&s) {
                opts.links.iter().copied().map(Some).collect()
            } else {
                vec![None]
            };
            links.into_iter().map(move |l| (s, l))
        })
        .collect();
    for &(scenario, link) in &plan {
        let metrics: Vec<&Metric> = METRICS.iter().filter(|m| m.scenario == scenario).collect();
        let t_scenario = Instant::now();
        let scenario_label = match link {
            Some(l) => format!("{scenario} over {}", l.label()),
            None => scenario.to_string(),
        };
        // In one process, run 0 is an unreported warm-up (the first session of each
        // implementation in a process is markedly slower: heap growth, first-touch page
        // faults); it is still verified, and a failure in it counts. A fresh child process per
        // measurement has none: a user's program starts cold too.
        let first = if opts.in_process && !needs_own_process(scenario) {
            0
        } else {
            1
        };
        for run in first..=opts.runs {
            for &imp in &opts.impls {
                let t = Instant::now();
                let result = execute(scenario, imp, &opts, link);
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
                        eprintln!("  [scenario {scenario_label} {run_label} {:<8}] done ({took:.1} s, not reported){}", imp.key(),
                            if out.failed_streams > 0 { format!("; note: {} stream(s) failed", out.failed_streams) } else { String::new() });
                    }
                    Ok(out) => {
                        let lost = out.failed_streams;
                        let mut shown = Vec::new();
                        for m in &metrics {
                            let v = out.values.get(m.value_key).copied().unwrap_or(f64::NAN);
                            shown.push(format!("{}={}", m.value_key, fmt_num(v)));
                            let cell = cells.entry((cell_key(m, link), imp)).or_default();
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
                            "  [scenario {scenario_label} {run_label} {:<8}] {} ({took:.1} s){extra}",
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
                                let msg = format!("scenario {scenario_label} {run_label} {}: {lost} stream(s) failed: {:?}", imp.key(), out.errors.iter().take(5).collect::<Vec<_>>());
                                eprintln!("    FAILURE: {msg}");
                                fatal.push(msg);
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("  [scenario {scenario_label} {run_label} {:<8}] FAILED after {took:.1} s: {e}", imp.key());
                        for m in &metrics {
                            cells
                                .entry((cell_key(m, link), imp))
                                .or_default()
                                .failures
                                .push(e.clone());
                        }
                        if !imp.failures_tolerated() {
                            fatal.push(format!(
                                "scenario {scenario_label} {run_label} {}: {e}",
                                imp.key()
                            ));
                        }
                    }
                }
            }
        }
        eprintln!(
            "scenario {scenario_label} done in {:.1} s",
            t_scenario.elapsed().as_secs_f64()
        );
    }

    // ---- table ----
    let mut table = String::new();
    let mut notes: Vec<String> = Vec::new();
    let mut json_metrics = Vec::new();
    let selected = |range: &std::ops::RangeInclusive<u8>| -> Vec<&Metric> {
        METRICS
            .iter()
            .filter(|m| range.contains(&m.scenario) && opts.scenarios.contains(&m.scenario))
            .collect()
    };
    let mut sections = vec![(None, selected(&LOOPBACK)), (None, selected(&SESSIONS))];
    sections.extend(opts.links.iter().map(|&l| (Some(l), selected(&WAN))));
    for (link, metrics) in sections.into_iter().filter(|(_, m)| !m.is_empty()) {
        if let Some(l) = link {
            let _ = writeln!(
                table,
                "Through an emulated link, {} (BDP {:.2} MB, bottleneck queue 1 × BDP):\n",
                l.label(),
                l.bdp() as f64 / 1e6
            );
        }
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
        for m in metrics {
            let key = cell_key(m, link);
            let raw_med = cells
                .get(&(key.clone(), Impl::Raw))
                .and_then(|c| median(&c.runs));
            let _ = write!(table, "| {} |", m.label);
            let mut jm = serde_json::Map::new();
            for &imp in &opts.impls {
                let cell = cells.get(&(key.clone(), imp));
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
                            key,
                            imp.title(),
                            c.failures.len(),
                            c.failures[0]
                        ));
                    }
                    if c.failed_streams > 0 {
                        text.push_str(" †");
                        notes.push(format!(
                            "{} / {}: lost data in {} stream(s) over {} of {} runs (e.g. {})",
                            key,
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
                "key": key,
                "link": link,
                "scenario": m.scenario,
                "label": m.label,
                "unit": m.unit,
                "lower_is_better": m.lower_is_better,
                "results": jm,
            }));
        }
        let _ = writeln!(table);
    }
    let total = wall.elapsed().as_secs_f64();
    print!("{table}");
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
            "idle_sessions": opts.idle_sessions,
            "burst_bytes": opts.burst_bytes,
            "bulk_streams": BULK_STREAMS,
            "write_size": CHUNK,
            "executor_threads": EXECUTOR_THREADS,
            "timeout_secs": opts.timeout.as_secs_f64(),
            "in_process": opts.in_process,
            "child_warmup": opts.child_warmup,
            "links": opts.links,
            "wan_streams": WAN_STREAMS,
            "wan_secs": opts.wan_secs,
            "wan_warmup_secs": opts.wan_warmup_secs,
            "wan_probe_secs": opts.wan_probe_secs,
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
    // The WAN plot only from WAN runs, as the loopback plot only from loopback runs.
    if opts.scenarios.iter().any(|s| WAN.contains(s)) {
        let svg_path = root.join("docs/wan.svg");
        let subtitle = format!(
            "{date}; {nproc} × {cpu}; median of {} runs; links {}; bulk {} s of the link's rate; BENCH_WAN=1 cargo bench -p smolmux-testsuite --bench compare",
            opts.runs,
            opts.links.iter().map(|l| l.label()).collect::<Vec<_>>().join(", "),
            opts.wan_secs
        );
        match write_wan_svg(&svg_path, &opts.impls, &cells, &opts.links, &subtitle) {
            Ok(()) => println!("WAN plot: {}", svg_path.display()),
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
