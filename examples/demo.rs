//! smolmux in one process, beside a raw TCP baseline measured in the same run: many streams
//! echoing bulk data at once over one loopback TCP connection, with a small-message probe
//! measuring latency alongside, and first the same work over plain TCP connections.
//!
//! ```text
//! cargo run --release --example demo
//! cargo run --example demo -- --help
//! ```
//!
//! A server and a client run on smol in this process (smol's global executor: one thread unless
//! `SMOL_THREADS` says otherwise). The demo runs the same scenario twice, each time with its own
//! listener on 127.0.0.1:
//!
//! 1. **raw TCP**, the baseline: 64 plain TCP connections, one per stream of the smolmux run;
//!    the small messages go over a 65th connection of their own;
//! 2. **smolmux**: one TCP connection and one session; the client opens 64 streams, and the
//!    small messages go over one more stream in the same session.
//!
//! In both, each of the 64 writes 16 MiB in 64 KiB writes while reading the echo back, and
//! checks every byte. Before and during that bulk transfer, 64-byte messages are echoed one at a
//! time and each round trip is timed. The smolmux session pings every 100 ms so that
//! `Mux::last_rtt` has a value. Each run ends in an orderly shutdown (half-closes, read EOF, and
//! for smolmux `Mux::close` and both drivers returning).
//!
//! The demo then prints the two runs side by side, each smolmux figure with its ratio to raw TCP,
//! and a few lines on why the figures look as they do. The README's benchmark table measures
//! other scenarios (one stream one way, a 64 B echo beside one bulk stream) with `cargo bench`.
//!
//! Sizes are MiB (2^20 bytes); rates are MB/s (10^6 bytes per second).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{future, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::Timer;
use smolmux::{Config, Mux};

const STREAMS: usize = 64;
const BYTES_PER_STREAM: usize = 16 << 20;
const WRITE_SIZE: usize = 64 << 10;
const PROBE_SIZE: usize = 64;
const IDLE_PROBES: usize = 200;
/// Pause between two small messages during the bulk transfer.
const PROBE_GAP: Duration = Duration::from_millis(2);
/// The demo stops with an error if no echoed byte arrives for this long.
const STALL_LIMIT: Duration = Duration::from_secs(5);
/// Period of the test data; not a multiple of any frame size, so misplaced frames show up.
const PATTERN_LEN: usize = (1 << 20) + 7;
/// Width of the explanations printed.
const WIDTH: usize = 92;

fn config() -> Config {
    Config::default().ping_interval(Some(Duration::from_millis(100)))
}

const USAGE: &str = "usage: demo [--help]";

const HELP: &str = "
smolmux in one process, beside a raw TCP baseline measured in the same run. A server and a
client run on smol, over loopback TCP. The same scenario runs twice:
  raw TCP: 64 plain TCP connections, plus one more for the small messages;
  smolmux: 64 streams, plus one for the small messages, in one session over one connection.
In both, 64 streams (or connections) each write 16 MiB at once while reading the echo back and
checking every byte, and 64-byte messages are echoed and timed, idle and during that transfer.
Prints the throughput, the finish times and the round trips side by side, each smolmux figure
with its ratio to raw TCP, and why the figures look as they do. Takes a few seconds and no
arguments; run it in release mode for meaningful numbers:

  cargo run --release --example demo";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {}
        Some("-h" | "--help") => {
            println!("{USAGE}\n{HELP}");
            return;
        }
        Some(other) => {
            eprintln!("demo: unknown argument {other:?}\n{USAGE}");
            std::process::exit(2);
        }
    }
    if let Err(e) = smol::block_on(run()) {
        eprintln!("demo: {e}");
        std::process::exit(1);
    }
}

/// What one run (raw TCP or smolmux) measured.
struct Measured {
    /// Small-message round trips before the bulk transfer.
    idle: Vec<Duration>,
    /// Small-message round trips during the bulk transfer.
    loaded: Vec<Duration>,
    /// From the first open (or connect) until every stream had its whole echo.
    elapsed: Duration,
    /// When each stream had its whole echo, after the start.
    finished: Vec<Duration>,
    /// smolmux only: `Mux::last_rtt` before the bulk transfer, and its values during it.
    ping_idle: Option<Duration>,
    ping_loaded: Vec<Duration>,
}

async fn run() -> io::Result<()> {
    let threads = std::env::var("SMOL_THREADS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(1);
    println!("smolmux demo: the same work over smolmux and over plain TCP, both measured now");
    wrap(
        "",
        &format!(
            "{STREAMS} streams each write {} MiB at once, in {} KiB writes, and read the echo \
             back, checking every byte. Beside them a {PROBE_SIZE}-byte message is echoed and \
             timed, idle first and then during the bulk transfer. Both ends run in this process \
             over loopback TCP, on smol's executor ({threads} thread{}; SMOL_THREADS sets it).",
            BYTES_PER_STREAM >> 20,
            WRITE_SIZE >> 10,
            if threads == 1 { "" } else { "s" }
        ),
    );
    println!("  raw TCP: {STREAMS} plain TCP connections, the small messages on one more");
    println!("  smolmux: {STREAMS} streams, the small messages on one more, in ONE TCP connection");
    println!();

    let pattern = Arc::new(make_pattern());
    println!("1/2 raw TCP baseline: {STREAMS} connections");
    let raw = raw_tcp(&pattern).await?;
    println!("2/2 smolmux: {STREAMS} streams over one connection");
    let mux = smolmux(&pattern).await?;
    report(raw, mux);
    Ok(())
}

/// The baseline: each bulk stream is a TCP connection of its own, and so is the probe.
async fn raw_tcp(pattern: &Arc<Vec<u8>>) -> io::Result<Measured> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = smol::spawn(raw_server(listener));

    let mut probe = connect(addr).await?;
    let idle = idle_probes(&mut probe).await?;
    let (mut probe, bulk) =
        bulk(probe, pattern, None, "connection", move |_| connect(addr)).await?;

    // Orderly shutdown: half-close the probe connection and wait for the server's FIN.
    probe.close().await?;
    probe.read_to_end(&mut Vec::new()).await?;
    // Every connection has ended (each client read EOF): stop accepting.
    if let Some(Err(e)) = server.cancel().await {
        return Err(e);
    }
    println!(
        "  all {STREAMS} connections verified and closed in {:.2} s",
        bulk.elapsed.as_secs_f64()
    );
    println!();
    Ok(Measured { idle, ..bulk })
}

async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot connect to {addr}: {e}")))?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// The raw TCP server: every connection echoed until the client half-closes it.
async fn raw_server(listener: TcpListener) -> io::Result<()> {
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        smol::spawn(echo(tcp)).detach();
    }
}

/// The smolmux run: one TCP connection, one session, a stream per bulk transfer and the probe.
async fn smolmux(pattern: &Arc<Vec<u8>>) -> io::Result<Measured> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = smol::spawn(mux_server(listener));

    let tcp = connect(addr).await?;
    let (mux, driver) = Mux::new(tcp.clone(), tcp, config());
    let driver = smol::spawn(driver);

    let mut probe = mux.open(b"probe").await?;
    let idle = idle_probes(&mut probe).await?;
    let ping_idle = mux.last_rtt();

    let opener = mux.clone();
    let open = move |i: usize| {
        let mux = opener.clone();
        async move { mux.open(format!("bulk {i}").as_bytes()).await }
    };
    let (mut probe, bulk) = bulk(probe, pattern, Some((&mux, ping_idle)), "stream", open).await?;

    // Orderly shutdown: half-close the probe stream and wait for the server's FIN (read EOF),
    // then close the session and wait for both drivers to finish.
    probe.close().await?;
    probe.read_to_end(&mut Vec::new()).await?;
    drop(probe);
    mux.close().await?;
    driver.await?;
    server.await?;
    println!(
        "  all {STREAMS} streams verified in {:.2} s; session closed cleanly\n  (both drivers \
         returned Ok, {} streams left open)",
        bulk.elapsed.as_secs_f64(),
        mux.stats().open_streams
    );
    println!();
    Ok(Measured {
        idle,
        ping_idle,
        ..bulk
    })
}

/// The smolmux server: one connection, every stream echoed until its opener half-closes it.
async fn mux_server(listener: TcpListener) -> io::Result<()> {
    let (tcp, _) = listener.accept().await?;
    tcp.set_nodelay(true)?;
    let (mux, driver) = Mux::new(tcp.clone(), tcp, config());
    let driver = smol::spawn(driver);
    // `accept` fails once the client has closed the session.
    while let Ok(stream) = mux.accept().await {
        smol::spawn(echo(stream)).detach();
    }
    driver.await
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<()> {
    let mut buf = vec![0; WRITE_SIZE];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.close().await;
        }
        stream.write_all(&buf[..n]).await?;
        // See `bulk_stream`: smol has no task budget, so a busy task gives others their turn.
        future::yield_now().await;
    }
}

async fn idle_probes<P: AsyncRead + AsyncWrite + Unpin>(
    probe: &mut P,
) -> io::Result<Vec<Duration>> {
    let mut idle = Vec::with_capacity(IDLE_PROBES);
    for _ in 0..IDLE_PROBES {
        idle.push(probe_once(probe).await?);
    }
    Ok(idle)
}

/// The bulk transfer over `STREAMS` streams from `open`, with the probe timing small messages
/// beside it and a progress line every half second. `mux`: the session and its idle PING RTT,
/// to report `Mux::last_rtt` (the smolmux run only). Returns the probe for an orderly close.
async fn bulk<P, S, F, Fut>(
    mut probe: P,
    pattern: &Arc<Vec<u8>>,
    mux: Option<(&Mux, Option<Duration>)>,
    what: &'static str,
    open: F,
) -> io::Result<(P, Measured)>
where
    P: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = io::Result<S>> + Send + 'static,
{
    let echoed = Arc::new(AtomicU64::new(0));
    let bulk_done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let tasks: Vec<_> = (0..STREAMS)
        .map(|i| {
            let (opening, pattern, echoed) = (open(i), pattern.clone(), echoed.clone());
            smol::spawn(async move {
                let stream = opening.await?;
                bulk_stream(stream, what, i, &pattern, &echoed).await?;
                io::Result::Ok(start.elapsed())
            })
        })
        .collect();
    let loaded = smol::spawn({
        let done = bulk_done.clone();
        async move {
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                samples.push(probe_once(&mut probe).await?);
                Timer::after(PROBE_GAP).await;
            }
            io::Result::Ok((probe, samples))
        }
    });
    let progress = smol::spawn({
        let (mux, echoed, done) = (
            mux.map(|(m, rtt)| (m.clone(), rtt)),
            echoed,
            bulk_done.clone(),
        );
        async move {
            // Each PONG replaces `last_rtt`: collect the distinct values seen while the bulk runs.
            let mut rtts = Vec::new();
            let mut seen = mux.as_ref().and_then(|(_, idle)| *idle);
            let (mut last_report, mut last_echoed, mut last_moved) = (start, 0, Instant::now());
            while !done.load(Ordering::Relaxed) {
                Timer::after(Duration::from_millis(100)).await;
                let rtt = mux.as_ref().and_then(|(mux, _)| mux.last_rtt());
                if rtt != seen {
                    seen = rtt;
                    rtts.extend(seen);
                }
                let now_echoed = echoed.load(Ordering::Relaxed);
                if now_echoed != last_echoed {
                    (last_echoed, last_moved) = (now_echoed, Instant::now());
                } else if last_moved.elapsed() >= STALL_LIMIT && !done.load(Ordering::Relaxed) {
                    // A hang is a bug: say so and stop, rather than wait forever.
                    let stats = mux
                        .as_ref()
                        .map(|(mux, _)| format!("; client {:?}", mux.stats()));
                    eprintln!(
                        "demo: no echoed bytes for {STALL_LIMIT:?} at {:.1} MB{}",
                        now_echoed as f64 / 1e6,
                        stats.unwrap_or_default()
                    );
                    std::process::exit(1);
                }
                if last_report.elapsed() >= Duration::from_millis(500) {
                    last_report = Instant::now();
                    let ping = match &mux {
                        Some((mux, _)) => {
                            format!("  PING RTT {}", mux.last_rtt().map_or("-".into(), ms))
                        }
                        None => String::new(),
                    };
                    println!(
                        "  {:5.1} s  {:7.1} MB echoed{ping}",
                        start.elapsed().as_secs_f64(),
                        now_echoed as f64 / 1e6,
                    );
                }
            }
            rtts
        }
    });

    let mut finished = Vec::with_capacity(STREAMS);
    for task in tasks {
        finished.push(task.await?);
    }
    let elapsed = start.elapsed();
    bulk_done.store(true, Ordering::Relaxed);
    let (probe, loaded) = loaded.await?;
    let ping_loaded = progress.await;
    let measured = Measured {
        idle: Vec::new(),
        loaded,
        elapsed,
        finished,
        ping_idle: None,
        ping_loaded,
    };
    Ok((probe, measured))
}

/// Writes the stream's share of data and reads the echo back at the same time, checking it.
///
/// Both halves, and the server's `echo`, yield to the executor after each 64 KiB. smol has no
/// task budget: a TCP read or write that can go on does, and the loopback socket buffers hold
/// megabytes, so without the yield one raw TCP task could move megabytes per turn while the
/// small message waits (hundreds of milliseconds). The yield costs smolmux's streams nothing
/// measurable, and both runs use this same code: only the transport differs.
async fn bulk_stream<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    what: &str,
    i: usize,
    pattern: &[u8],
    echoed: &AtomicU64,
) -> io::Result<()> {
    let offset = i * 104_729 % PATTERN_LEN; // each stream sends a different byte sequence
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let write = async {
        let mut sent = 0;
        while sent < BYTES_PER_STREAM {
            let at = (offset + sent) % PATTERN_LEN;
            let n = WRITE_SIZE.min(BYTES_PER_STREAM - sent);
            writer.write_all(&pattern[at..at + n]).await?;
            sent += n;
            future::yield_now().await;
        }
        writer.close().await // half-close: the echo keeps coming back
    };
    let read = async {
        let mut buf = vec![0; WRITE_SIZE];
        let mut received = 0;
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            let at = (offset + received) % PATTERN_LEN;
            if received + n > BYTES_PER_STREAM || buf[..n] != pattern[at..at + n] {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{what} {i}: echo differs within bytes {received}..{}",
                        received + n
                    ),
                ));
            }
            received += n;
            echoed.fetch_add(n as u64, Ordering::Relaxed);
            future::yield_now().await;
        }
        if received != BYTES_PER_STREAM {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{what} {i}: echo ended after {received} of {BYTES_PER_STREAM} bytes"),
            ));
        }
        Ok(())
    };
    let (wrote, read) = future::zip(write, read).await;
    wrote.and(read)
}

/// One small message out and back; returns its round-trip time.
async fn probe_once<P: AsyncRead + AsyncWrite + Unpin>(probe: &mut P) -> io::Result<Duration> {
    let message = [0x5a; PROBE_SIZE];
    let mut reply = [0; PROBE_SIZE];
    let sent = Instant::now();
    probe.write_all(&message).await?;
    probe.read_exact(&mut reply).await?;
    let rtt = sent.elapsed();
    if reply != message {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "probe echo differs",
        ));
    }
    Ok(rtt)
}

/// Twice the period, so that any slice of up to one period starting within it is contiguous.
fn make_pattern() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut pattern: Vec<u8> = (0..PATTERN_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    pattern.extend_from_within(..);
    pattern
}

fn report(mut raw: Measured, mut mux: Measured) {
    for m in [&mut raw, &mut mux] {
        m.idle.sort();
        m.loaded.sort();
        m.ping_loaded.sort();
    }
    let total = (STREAMS * BYTES_PER_STREAM) as f64;
    let rate = |m: &Measured| total / m.elapsed.as_secs_f64() / 1e6;
    let first = |m: &Measured| m.finished.iter().min().copied().unwrap_or_default();
    let last = |m: &Measured| m.finished.iter().max().copied().unwrap_or_default();
    let secs = |d: Duration| d.as_secs_f64();
    let msec = |d: Duration| d.as_secs_f64() * 1e3;
    let p50 = |s: &[Duration]| percentile(s, 50);
    let max = |s: &[Duration]| s.last().copied().unwrap_or_default();

    println!(
        "results (ratio = smolmux / raw TCP: above 1x is better for throughput, worse for times):"
    );
    println!(
        "  {:<34} {:>11} {:>11} {:>7}",
        "", "raw TCP", "smolmux", "ratio"
    );
    let row = |label: &str, raw: f64, mux: f64, unit: &str| {
        let decimals = if unit == "MB/s" { 0 } else { 2 };
        println!(
            "  {label:<34} {:>11} {:>11} {:>6.2}x",
            format!("{raw:.decimals$} {unit}"),
            format!("{mux:.decimals$} {unit}"),
            mux / raw
        );
    };
    row("bulk: throughput each way", rate(&raw), rate(&mux), "MB/s");
    row(
        "bulk: first stream finished",
        secs(first(&raw)),
        secs(first(&mux)),
        "s",
    );
    row(
        "bulk: last stream finished",
        secs(last(&raw)),
        secs(last(&mux)),
        "s",
    );
    let (idle, loaded) = ((&raw.idle, &mux.idle), (&raw.loaded, &mux.loaded));
    for (label, (r, m), p) in [
        ("small message, idle: p50", idle, 50),
        ("small message, idle: p99", idle, 99),
        ("small message, during bulk: p50", loaded, 50),
        ("small message, during bulk: p99", loaded, 99),
        ("small message, during bulk: max", loaded, 100),
    ] {
        row(label, msec(percentile(r, p)), msec(percentile(m, p)), "ms");
    }
    wrap(
        "  ",
        &format!(
            "small message: {PROBE_SIZE} B echoed one at a time; {IDLE_PROBES} idle, and during \
             the bulk transfer one every {} ms ({} raw TCP, {} smolmux)",
            PROBE_GAP.as_millis(),
            raw.loaded.len(),
            mux.loaded.len()
        ),
    );
    wrap(
        "  ",
        &format!(
            "smolmux PING/PONG (Mux::last_rtt, a PING every 100 ms): idle {}; during bulk p50 \
             {}, max {} ({} PONGs)",
            mux.ping_idle.map_or("-".into(), ms),
            ms(p50(&mux.ping_loaded)),
            ms(max(&mux.ping_loaded)),
            mux.ping_loaded.len()
        ),
    );
    println!();

    // The table of finish times only when they differ enough to ask why.
    let spread = |m: &Measured| last(m).saturating_sub(first(m));
    let stream_at = |m: &Measured, at: Duration| m.finished.iter().position(|t| *t == at);
    let finish_here = if spread(&mux) < last(&mux) / 20 {
        format!(
            "In this run the {STREAMS} streams finished within {:.1} ms of each other (the raw \
             TCP connections within {:.1} ms).",
            msec(spread(&mux)),
            msec(spread(&raw))
        )
    } else {
        println!("smolmux: when each stream had its whole echo, seconds after the start:");
        for (r, times) in mux.finished.chunks(8).enumerate() {
            let cells: Vec<String> = times
                .iter()
                .enumerate()
                .map(|(c, t)| format!("#{:<2} {:6.3}", r * 8 + c, t.as_secs_f64()))
                .collect();
            println!("  {}", cells.join("   "));
        }
        println!();
        format!(
            "In this run stream #{} finished first, at {:.2} s, and #{} last, at {:.2} s (the \
             raw TCP connections: {:.2} s to {:.2} s).",
            stream_at(&mux, first(&mux)).unwrap_or_default(),
            secs(first(&mux)),
            stream_at(&mux, last(&mux)).unwrap_or_default(),
            secs(last(&mux)),
            secs(first(&raw)),
            secs(last(&raw)),
        )
    };

    println!("what the figures say:");
    wrap(
        "- ",
        &format!(
            "The scenario: {STREAMS} streams each echo {} MiB at once, so {:.0} MB go each way \
             while both ends (128 application tasks, for smolmux also two drivers, and the \
             checking of every byte) share this machine's cores. Only the transport differs \
             between the two runs (the same tasks, each yielding to the executor after every 64 \
             KiB): the ratios are what carrying {STREAMS} streams in one smolmux connection \
             costs against {STREAMS} TCP connections. On a busy machine all figures vary from \
             run to run: run it again to see by how much.",
            BYTES_PER_STREAM >> 20,
            total / 1e6
        ),
    );
    wrap(
        "- ",
        &format!(
            "During the bulk transfer a small message takes far longer than idle (p50: smolmux \
             {} against {} idle). It waits behind the work queued ahead of it: for its turn on \
             cores busy with 128 tasks moving 64 KiB at a time, and in smolmux also behind the \
             bulk data already in the one connection (the other streams' frames in the \
             sender's queue and the socket buffers, both ways). The raw TCP message has a \
             connection of its own and still takes {} against {} idle: that much is the busy \
             cores, not the multiplexing.",
            ms(p50(&mux.loaded)),
            ms(p50(&mux.idle)),
            ms(p50(&raw.loaded)),
            ms(p50(&raw.idle)),
        ),
    );
    wrap(
        "- ",
        &format!(
            "Finish times: smolmux sends one frame per stream in turn (fair round-robin), so \
             streams that have data and credit move at the same pace. They drift apart through \
             the receiver's windows (a stream sends only what its receiver has granted, and a \
             stream opened while few others were can be granted more, up to 4 MiB, than one \
             opened among {STREAMS}, whose windows share the session's receive buffer) and \
             through when each task gets to run. {finish_here}"
        ),
    );
    wrap(
        "- ",
        "The README's \"Performance\" table measures other scenarios with `cargo bench`: one \
         stream sending one way, a 64 B echo on an idle session and beside one bulk stream, on \
         a 2-thread executor. Its figures are not this demo's; compare ratios to raw TCP \
         measured in the same run, not absolute figures.",
    );
}

/// Prints `text` wrapped at [`WIDTH`] columns: `first` before its first line, and as many
/// spaces before the others. A unit stays on the line of its number ("2.5 ms").
fn wrap(first: &str, text: &str) {
    let mut words: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        let unit = word.trim_end_matches([',', ';', '.', ')']);
        let is_unit = matches!(unit, "ms" | "s" | "B" | "KiB" | "MiB" | "MB" | "MB/s");
        match words.last_mut() {
            Some(number) if is_unit && number.ends_with(|c: char| c.is_ascii_digit()) => {
                number.push(' ');
                number.push_str(word);
            }
            _ => words.push(word.to_string()),
        }
    }
    let indent = " ".repeat(first.len());
    let mut line = first.to_string();
    for word in words {
        if line.len() > indent.len() && line.len() + 1 + word.len() > WIDTH {
            println!("{line}");
            line.clone_from(&indent);
        } else if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    println!("{line}");
}

/// Nearest-rank percentile of sorted samples (zero if there are none).
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
