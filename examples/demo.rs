//! smolmux in one process: many streams echoing bulk data at once over one loopback TCP
//! connection, with a small-message probe measuring latency alongside.
//!
//! ```text
//! cargo run --release --example demo
//! cargo run --example demo -- --help
//! ```
//!
//! A server and a client run on smol in this process, joined by one TCP connection on
//! 127.0.0.1 and one smolmux session. The client opens 64 streams; each writes 16 MiB in 64 KiB
//! writes while reading the echo back, and checks every byte. Meanwhile a separate stream sends
//! 64-byte messages and times each echo, and the session pings every 100 ms so that
//! `Mux::last_rtt` has a value. The demo then closes the session and waits for both ends.
//!
//! Sizes are MiB (2^20 bytes); rates are MB/s (10^6 bytes per second).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::Timer;
use smolmux::{Config, Mux, Stream};

const STREAMS: usize = 64;
const BYTES_PER_STREAM: usize = 16 << 20;
const WRITE_SIZE: usize = 64 << 10;
const PROBE_SIZE: usize = 64;
const IDLE_PROBES: usize = 200;
/// The demo stops with an error if no echoed byte arrives for this long.
const STALL_LIMIT: Duration = Duration::from_secs(5);
/// Period of the test data; not a multiple of any frame size, so misplaced frames show up.
const PATTERN_LEN: usize = (1 << 20) + 7;

fn config() -> Config {
    Config::default().ping_interval(Some(Duration::from_millis(100)))
}

const USAGE: &str = "usage: demo [--help]";

const HELP: &str = "
smolmux in one process: a server and a client on smol, joined by one loopback TCP connection.
The client opens 64 streams; each writes 16 MiB while reading the echo back and checking every
byte. A separate stream times 64-byte echoes alongside, and the session pings every 100 ms.
Prints the throughput, when each stream finished, and the round trips (idle and during the
bulk transfer). Takes no arguments; run it in release mode for meaningful numbers:

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

async fn run() -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = smol::spawn(server(listener));

    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (mux, driver) = Mux::new(tcp.clone(), tcp, config());
    let driver = smol::spawn(driver);

    println!(
        "smolmux demo: {STREAMS} streams x {} MiB echoed over one TCP connection to {addr}",
        BYTES_PER_STREAM >> 20
    );
    println!(
        "  each stream writes in {} KiB writes and verifies every byte of the echo",
        WRITE_SIZE >> 10
    );
    println!();

    // Latency of a small message on an otherwise idle session.
    let mut probe = mux.open(b"probe").await?;
    let mut idle = Vec::with_capacity(IDLE_PROBES);
    for _ in 0..IDLE_PROBES {
        idle.push(probe_once(&mut probe).await?);
    }

    let idle_ping = mux.last_rtt();

    // The bulk run, with the probe going on beside it.
    let pattern = Arc::new(make_pattern());
    let echoed = Arc::new(AtomicU64::new(0));
    let bulk_done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let bulk: Vec<_> = (0..STREAMS)
        .map(|i| {
            let (mux, pattern, echoed) = (mux.clone(), pattern.clone(), echoed.clone());
            smol::spawn(async move {
                let stream = mux.open(format!("bulk {i}").as_bytes()).await?;
                bulk_stream(stream, i, &pattern, &echoed).await?;
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
                Timer::after(Duration::from_millis(2)).await;
            }
            io::Result::Ok((probe, samples))
        }
    });
    let progress = smol::spawn({
        let (mux, echoed, done) = (mux.clone(), echoed.clone(), bulk_done.clone());
        async move {
            // Each PONG replaces `last_rtt`: collect the distinct values seen while the bulk runs.
            let (mut rtts, mut seen) = (Vec::new(), idle_ping);
            let (mut last_report, mut last_echoed, mut last_moved) = (start, 0, Instant::now());
            while !done.load(Ordering::Relaxed) {
                Timer::after(Duration::from_millis(100)).await;
                if mux.last_rtt() != seen {
                    seen = mux.last_rtt();
                    rtts.extend(seen);
                }
                let now_echoed = echoed.load(Ordering::Relaxed);
                if now_echoed != last_echoed {
                    (last_echoed, last_moved) = (now_echoed, Instant::now());
                } else if last_moved.elapsed() >= STALL_LIMIT && !done.load(Ordering::Relaxed) {
                    // A hang is a bug: say so and stop, rather than wait forever.
                    eprintln!(
                        "error: no echoed bytes for {STALL_LIMIT:?} at {:.1} MB; client {:?}",
                        now_echoed as f64 / 1e6,
                        mux.stats()
                    );
                    std::process::exit(1);
                }
                if last_report.elapsed() >= Duration::from_millis(500) {
                    last_report = Instant::now();
                    println!(
                        "  {:5.1} s  {:7.1} MB echoed  PING RTT {}",
                        start.elapsed().as_secs_f64(),
                        now_echoed as f64 / 1e6,
                        mux.last_rtt().map_or("-".into(), ms),
                    );
                }
            }
            rtts
        }
    });

    let mut finished = Vec::with_capacity(STREAMS);
    for task in bulk {
        finished.push(task.await?);
    }
    let elapsed = start.elapsed();
    bulk_done.store(true, Ordering::Relaxed);
    let (mut probe, mut loaded) = loaded.await?;
    let mut ping_rtts = progress.await;

    let total = (STREAMS * BYTES_PER_STREAM) as f64;
    let rate = total / elapsed.as_secs_f64() / 1e6;
    println!();
    println!(
        "bulk: {:.1} MB echoed and verified in {:.2} s",
        total / 1e6,
        elapsed.as_secs_f64()
    );
    println!(
        "  throughput: {rate:.0} MB/s each way ({:.0} MB/s both directions)",
        2.0 * rate
    );
    println!();
    println!("per-stream completion, seconds after the start (all {STREAMS} verified):");
    for (r, times) in finished.chunks(8).enumerate() {
        let cells: Vec<String> = times
            .iter()
            .enumerate()
            .map(|(c, t)| format!("#{:<2} {:6.3}", r * 8 + c, t.as_secs_f64()))
            .collect();
        println!("  {}", cells.join("   "));
    }
    let first = finished.iter().min().unwrap();
    let last = finished.iter().max().unwrap();
    println!(
        "  first {:.3} s, last {:.3} s",
        first.as_secs_f64(),
        last.as_secs_f64()
    );
    println!();
    println!("round trips (small message: {PROBE_SIZE} bytes echoed on its own stream):");
    print_latency("small message, idle", &mut idle);
    print_latency("small message, during bulk", &mut loaded);
    print_latency("PING/PONG, idle", &mut Vec::from_iter(idle_ping));
    print_latency("PING/PONG, during bulk", &mut ping_rtts);
    println!("  (PING/PONG: Mux::last_rtt, one PING every 100 ms after the last PONG)");

    // Orderly shutdown: half-close the probe stream and wait for the server's FIN (read EOF),
    // then close the session and wait for both drivers to finish.
    probe.close().await?;
    let mut rest = Vec::new();
    probe.read_to_end(&mut rest).await?;
    drop(probe);
    mux.close().await?;
    driver.await?;
    server.await?;
    let stats = mux.stats();
    println!(
        "\nsession closed cleanly (client and server drivers returned Ok; {} streams left open)",
        stats.open_streams
    );
    Ok(())
}

/// The server: one connection, every stream echoed until its opener half-closes it.
async fn server(listener: TcpListener) -> io::Result<()> {
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

async fn echo(mut stream: Stream) -> io::Result<()> {
    let mut buf = vec![0; WRITE_SIZE];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.close().await;
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// Writes the stream's share of data and reads the echo back at the same time, checking it.
async fn bulk_stream(
    stream: Stream,
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
                        "stream {i}: echo differs within bytes {received}..{}",
                        received + n
                    ),
                ));
            }
            received += n;
            echoed.fetch_add(n as u64, Ordering::Relaxed);
        }
        if received != BYTES_PER_STREAM {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("stream {i}: echo ended after {received} of {BYTES_PER_STREAM} bytes"),
            ));
        }
        Ok(())
    };
    let (wrote, read) = future::zip(write, read).await;
    wrote.and(read)
}

/// One small message out and back; returns its round-trip time.
async fn probe_once(probe: &mut Stream) -> io::Result<Duration> {
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

fn print_latency(label: &str, samples: &mut [Duration]) {
    samples.sort();
    if samples.is_empty() {
        println!("  {label:<28} no samples");
        return;
    }
    println!(
        "  {label:<28} n={:<4} p50 {:>9}   p99 {:>9}   max {:>9}",
        samples.len(),
        ms(percentile(samples, 50)),
        ms(percentile(samples, 99)),
        ms(*samples.last().unwrap()),
    );
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
