//! An interoperability peer: an echo server and a verifying load client, in each of smolmux's
//! wire protocols, to point at another implementation (Go's xtaci/smux, picomux) or at your own
//! server.
//!
//! ```text
//! cargo run --release --example mux_peer -- serve --listen 127.0.0.1:7000 --protocol smux2
//! cargo run --release --example mux_peer -- client --connect 127.0.0.1:7000 --protocol smux2 --streams 50 --bytes 1000000
//! cargo run --example mux_peer -- --help
//! ```
//!
//! The client opens all its streams at once, writes the pattern on each while reading the
//! echo back, checks every byte, half-closes, and prints one line: `ok streams=K bytes=N
//! secs=S MBps=X` (exit status 0) or `FAIL ...` (exit status 1). The server echoes every
//! stream it accepts until EOF, then closes it.

use std::io;
use std::process::exit;
use std::time::Instant;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smolmux::{Config, Mux, Protocol, Role, Stream};

const USAGE: &str = "usage: mux_peer serve --listen ADDR --protocol P
       mux_peer client --connect ADDR --protocol P [--streams K] [--bytes N]";

const HELP: &str = "
An interoperability peer for smolmux's wire protocols.

modes:
  serve     accept connections on --listen ADDR; echo every stream the peer opens until its
            EOF, then close the stream. Prints `listening on ADDR` (the bound address, so that
            port 0 picks a free port) and runs until killed.
  client    connect to --connect ADDR; open K streams at once, write N bytes on each while
            reading N bytes back, check every byte, half-close, and print one line:
            `ok streams=K bytes=N secs=S MBps=X` (exit status 0), where MBps counts the bytes
            sent (K * N) in millions per second, or `FAIL ...` (exit status 1).

options:
  --listen ADDR     (serve) HOST:PORT to listen on; host names are resolved
  --connect ADDR    (client) HOST:PORT of the server
  --protocol P      picomux | smux1 | smux2 (Go xtaci/smux version 1 or 2) | yamux (not yet
                    implemented: the session ends at once). The server side takes the
                    listener's role (even stream ids), the client the dialer's.
  --streams K       (client) streams to open at once; default 1
  --bytes N         (client) bytes to send and expect back on each stream; default 1000000
  -h, --help        this text

Byte i of every stream is (i * 31 + 7) mod 251, so a peer in another language can generate
and check the same data. Errors name the address and the stream they concern.";

/// Byte `i` of every stream, as the help text defines it.
fn pattern_byte(i: u64) -> u8 {
    ((i % 251 * 31 + 7) % 251) as u8
}

/// What the command line asks for.
#[derive(Debug)]
enum Mode {
    Serve {
        listen: String,
        protocol: Protocol,
    },
    Client {
        connect: String,
        protocol: Protocol,
        streams: usize,
        bytes: u64,
    },
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}\n{HELP}");
        return;
    }
    let mode = parse(&args).unwrap_or_else(|e| {
        eprintln!("mux_peer: {e}\n{USAGE}\n(mux_peer --help explains)");
        exit(2)
    });
    match mode {
        Mode::Serve { listen, protocol } => {
            if let Err(e) = smol::block_on(serve(&listen, protocol)) {
                eprintln!("mux_peer: {e}");
                exit(1);
            }
        }
        Mode::Client {
            connect,
            protocol,
            streams,
            bytes,
        } => {
            let start = Instant::now();
            match smol::block_on(client(&connect, protocol, streams, bytes)) {
                Ok(()) => {
                    let secs = start.elapsed().as_secs_f64();
                    let mbps = (streams as f64 * bytes as f64) / secs.max(1e-9) / 1e6;
                    println!("ok streams={streams} bytes={bytes} secs={secs:.3} MBps={mbps:.1}");
                }
                Err(e) => {
                    println!("FAIL {e}");
                    exit(1);
                }
            }
        }
    }
}

/// Parses the command line (without the program's name).
fn parse(args: &[String]) -> Result<Mode, String> {
    let (mode, rest) = match args.split_first() {
        Some((mode, rest)) if mode == "serve" || mode == "client" => (mode.as_str(), rest),
        Some((other, _)) => return Err(format!("unknown mode {other:?} (serve or client)")),
        None => return Err("no mode given (serve or client)".into()),
    };
    let mut listen = None;
    let mut connect = None;
    let mut protocol = None;
    let mut streams = None;
    let mut bytes = None;
    let mut rest = rest.iter();
    while let Some(option) = rest.next() {
        let slot = match (mode, option.as_str()) {
            ("serve", "--listen") => &mut listen,
            ("client", "--connect") => &mut connect,
            (_, "--protocol") => &mut protocol,
            ("client", "--streams") => &mut streams,
            ("client", "--bytes") => &mut bytes,
            _ => return Err(format!("{mode}: unknown argument {option:?}")),
        };
        let value = rest
            .next()
            .ok_or_else(|| format!("{option} needs a value"))?;
        if slot.replace(value.as_str()).is_some() {
            return Err(format!("{option} given twice"));
        }
    }
    let protocol = parse_protocol(protocol.ok_or("--protocol P is required")?)?;
    match mode {
        "serve" => Ok(Mode::Serve {
            listen: listen.ok_or("serve needs --listen ADDR")?.to_owned(),
            protocol,
        }),
        _ => Ok(Mode::Client {
            connect: connect.ok_or("client needs --connect ADDR")?.to_owned(),
            protocol,
            streams: parse_count("--streams", streams.unwrap_or("1"))?,
            bytes: parse_count("--bytes", bytes.unwrap_or("1000000"))?,
        }),
    }
}

fn parse_protocol(name: &str) -> Result<Protocol, String> {
    match name {
        "picomux" => Ok(Protocol::Picomux),
        "smux1" => Ok(Protocol::SmuxV1),
        "smux2" => Ok(Protocol::SmuxV2),
        "yamux" => Ok(Protocol::Yamux),
        _ => Err(format!(
            "unknown protocol {name:?} (picomux, smux1, smux2 or yamux)"
        )),
    }
}

/// A whole number, `_` allowed as a digit separator (1_000_000).
fn parse_count<T: std::str::FromStr>(option: &str, value: &str) -> Result<T, String> {
    value
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{option} {value:?} is not a whole number"))
}

/// The session settings for `protocol` on this side of the connection.
fn config(protocol: Protocol, role: Role) -> Config {
    let config = Config::default().protocol(protocol);
    // Picomux has no roles (both sides are alike); the smux dialects need one.
    if protocol.needs_role() {
        config.role(role)
    } else {
        config
    }
}

/// Prefixes an error with what was being done, keeping its kind.
fn context(what: String) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Accepts connections on `addr`; on each, echoes every stream the peer opens.
async fn serve(addr: &str, protocol: Protocol) -> io::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(context(format!("binding {addr}")))?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (tcp, peer) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        smol::spawn(async move {
            let (mux, driver) = Mux::new(tcp.clone(), tcp, config(protocol, Role::Server));
            let driver = smol::spawn(driver);
            // `accept` fails once the session has ended.
            while let Ok(stream) = mux.accept().await {
                smol::spawn(async move {
                    let id = stream.id();
                    if let Err(e) = echo(stream).await {
                        eprintln!("mux_peer: {peer}: stream {id}: {e}");
                    }
                })
                .detach();
            }
            drop(mux);
            match driver.await {
                Ok(()) => eprintln!("mux_peer: connection from {peer} ended"),
                Err(e) => eprintln!("mux_peer: connection from {peer} ended: {e}"),
            }
        })
        .detach();
    }
}

/// Copies the stream back to its opener until EOF, then closes it.
async fn echo(stream: Stream) -> io::Result<()> {
    let (mut reader, mut writer) = stream.split();
    futures_lite::io::copy(&mut reader, &mut writer).await?;
    writer.close().await
}

/// Connects to `addr`, runs `streams` streams of `bytes` bytes at once, then closes the session.
async fn client(addr: &str, protocol: Protocol, streams: usize, bytes: u64) -> io::Result<()> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(context(format!("connecting to {addr}")))?;
    tcp.set_nodelay(true)?;
    let (mux, driver) = Mux::new(tcp.clone(), tcp, config(protocol, Role::Client));
    let driver = smol::spawn(driver);
    let mut tasks = Vec::with_capacity(streams);
    for index in 0..streams {
        let stream = mux
            .open(b"")
            .await
            .map_err(context(format!("{addr}: opening stream #{index}")))?;
        let what = format!("{addr}: stream #{index} (id {})", stream.id());
        tasks.push(smol::spawn(async move {
            exchange(stream, bytes).await.map_err(context(what))
        }));
    }
    // Every stream's result, so that the first failure is the one reported.
    let mut outcome = Ok(());
    for task in tasks {
        let result = task.await;
        if outcome.is_ok() {
            outcome = result;
        }
    }
    if outcome.is_ok() {
        mux.close()
            .await
            .map_err(context(format!("{addr}: closing the session")))?;
    }
    drop(mux);
    // Ending the session: a clean end after close, or the error that broke it. A peer that
    // simply drops the connection after our close ends it cleanly too.
    let ended = driver
        .await
        .map_err(context(format!("{addr}: the session")));
    outcome.and(ended)
}

/// Writes `bytes` pattern bytes and half-closes, while reading and checking as many back and
/// then the peer's EOF.
async fn exchange(stream: Stream, bytes: u64) -> io::Result<()> {
    let (mut reader, mut writer) = stream.split();
    let send = smol::spawn(async move {
        let mut chunk = vec![0u8; 64 << 10];
        let mut sent = 0u64;
        while sent < bytes {
            let n = chunk.len().min((bytes - sent) as usize);
            for (k, b) in chunk[..n].iter_mut().enumerate() {
                *b = pattern_byte(sent + k as u64);
            }
            writer
                .write_all(&chunk[..n])
                .await
                .map_err(context(format!("writing at byte {sent}")))?;
            sent += n as u64;
        }
        writer.close().await.map_err(context("half-closing".into()))
    });
    let mut buf = vec![0u8; 64 << 10];
    let mut received = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(context(format!("reading at byte {received}")))?;
        if n == 0 {
            break;
        }
        for (k, &b) in buf[..n].iter().enumerate() {
            let at = received + k as u64;
            if at >= bytes {
                return Err(bad_data(format!(
                    "the echo is longer than the {bytes} bytes sent"
                )));
            }
            let expected = pattern_byte(at);
            if b != expected {
                return Err(bad_data(format!(
                    "byte {at} of the echo is {b}, expected {expected}"
                )));
            }
        }
        received += n as u64;
    }
    if received < bytes {
        return Err(bad_data(format!(
            "the echo ended (EOF) after {received} of {bytes} bytes"
        )));
    }
    send.await
}

fn bad_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}
