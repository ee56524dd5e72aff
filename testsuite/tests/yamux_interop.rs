//! Interop in the yamux dialect (issue 18) with both real implementations, both directions:
//! Go's hashicorp/yamux (Debian's golang-github-hashicorp-yamux-dev, df201c7; the peer in
//! `tests/go/yamux_peer` runs as a child process on 127.0.0.1 and an ephemeral port) and
//! rust-yamux 0.13 (in this process). `YAMUX_GOPATH` overrides where the Go sources are looked
//! for (default `/usr/share/gocode`); without Go every Go test prints a loud SKIP and passes,
//! unless `CI` is set.
//!
//! smolmux does not speak yamux yet: the tests that need it are ignored until the dialect
//! lands. The tests of the Go and rust-yamux sides alone (`baseline_*`) run now: they keep the
//! peers and the harness honest, and they show the holes between rust-yamux and Go that
//! smolmux must not have (`/work/shared/YAMUX.md` §9: Go's frames over 1 MiB, Go's GoAway(0),
//! more than 512 streams, open-then-close without data).
//!
//! This yamux cannot reset a stream of its own accord: Go's RST is its refusal of a SYN (its
//! accept backlog full, or after its GoAway). Timeouts are hang guards only.

mod built_examples;
mod go_interop;
mod support;

/// The benchmark's rust-yamux driver task and handle, shared rather than copied.
#[path = "../benches/compare/peers/yamux_handle.rs"]
#[allow(dead_code)]
mod yamux_handle;

/// What `yamux_handle` expects of its crate: the executor's `spawn`.
mod runtime {
    pub(crate) use crate::support::spawn;
}

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smolmux::{Config, Protocol, Role};

use built_examples::example;
use go_interop::{
    accept, dial, ended, exchange, expect_ok, listen, read_pattern, send_pattern, GoLibrary, Peer,
};
use support::{hang_guard, run, sleep, spawn, spawn_echo_server};
use yamux_handle::YamuxHandle;

// ----- the Go peer -----

/// The Go peer's executable, built on first use; `None` (after a loud SKIP) without Go.
fn go_peer() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            go_interop::build_go_peer(&GoLibrary {
                test: "yamux_interop",
                peer: "yamux_peer",
                import_path: "github.com/hashicorp/yamux",
                debian_package: "golang-github-hashicorp-yamux-dev",
                gopath_variable: "YAMUX_GOPATH",
            })
        })
        .as_deref()
}

/// Starts a Go yamux server with `args`; returns it and its address.
fn go_server(exe: &Path, args: &[&str]) -> (Peer, String) {
    let mut command = Command::new(exe);
    command.args(["-mode", "serve"]).args(args);
    let mut server = Peer::spawn(command);
    let addr = server.listen_addr();
    (server, addr)
}

/// Starts a Go yamux client towards `addr`, with `args`.
fn go_client(exe: &Path, addr: &str, args: &[&str]) -> Peer {
    let mut command = Command::new(exe);
    command
        .args(["-mode", "client", "-connect", addr])
        .args(args);
    Peer::spawn(command)
}

/// Waits for `count` of a Go server's `stream N: ...` lines, each ending with `ending`.
fn expect_streams(server: &mut Peer, count: usize, ending: &str) {
    for _ in 0..count {
        let done = server.line_starting("stream ");
        assert!(done.ends_with(ending), "expected {ending:?}: {done}");
    }
}

// ----- smolmux's side -----

fn config(role: Role) -> Config {
    Config::default().protocol(Protocol::Yamux).role(role)
}

/// The echo tests' sizes: 1 × 10 MB and 50 × 1 MB.
const ECHO_SIZES: [(&str, &str); 2] = [("1", "10000000"), ("50", "1000000")];

// ----- rust-yamux -----

/// rust-yamux 0.13 on a connection to `addr`, in `mode`.
async fn rust_yamux_dial(addr: &str, mode: yamux::Mode) -> YamuxHandle {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (handle, driver) = YamuxHandle::start(tcp, mode);
    driver.detach();
    handle
}

/// rust-yamux serving the next connection of `listener`.
async fn rust_yamux_accept(listener: &smol::net::TcpListener) -> YamuxHandle {
    let (tcp, _) = hang_guard(listener.accept()).await.unwrap();
    let (handle, driver) = YamuxHandle::start(tcp, yamux::Mode::Server);
    driver.detach();
    handle
}

/// Echoes every stream rust-yamux accepts until its EOF, then closes it.
fn rust_yamux_echo_server(handle: YamuxHandle) -> smol::Task<()> {
    spawn(async move {
        while let Ok(stream) = handle.accept().await {
            spawn(async move {
                let (mut reader, mut writer) = futures_lite::io::split(stream);
                futures_lite::io::copy(&mut reader, &mut writer).await?;
                writer.close().await
            })
            .detach();
        }
    })
}

/// `streams` rust-yamux streams at once, each writing `bytes` of the pattern while reading
/// the echo back, then half-closing and expecting exactly the pattern and EOF. Each stream's
/// halves are polled by one task: a rust-yamux stream has one command channel, whose sender
/// keeps the waker of the last task that polled it, so a reader and a writer in two tasks
/// can both wait forever (the first version of this test hung at 6.4 MB).
async fn rust_yamux_exchange(handle: &YamuxHandle, streams: usize, bytes: u64) {
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let stream = hang_guard(handle.open()).await.unwrap();
        tasks.push(spawn(async move {
            let (mut reader, mut writer) = futures_lite::io::split(stream);
            let writing = async move {
                send_pattern(&mut writer, bytes, 32 << 10).await?;
                writer.close().await
            };
            let (received, written) = future::zip(read_pattern(&mut reader), writing).await;
            written?;
            received
        }));
    }
    for task in tasks {
        assert_eq!(hang_guard(task).await.unwrap(), bytes);
    }
}

// ----- baseline: the Go and rust-yamux sides alone -----

#[test]
fn baseline_rust_yamux_and_go_echo_both_ways() {
    let Some(exe) = go_peer() else { return };
    let (mut server, addr) = go_server(exe, &[]);
    run(async {
        let handle = rust_yamux_dial(&addr, yamux::Mode::Client).await;
        rust_yamux_exchange(&handle, 1, 10_000_000).await;
        rust_yamux_exchange(&handle, 50, 1_000_000).await;
    });
    expect_streams(&mut server, 1, "echoed 10000000 bytes");
    expect_streams(&mut server, 50, "echoed 1000000 bytes");
    run(async {
        let (listener, addr) = listen().await;
        let client = go_client(exe, &addr, &["-streams", "50", "-bytes", "1000000"]);
        let _echo = rust_yamux_echo_server(rust_yamux_accept(&listener).await);
        expect_ok(client).await;
    });
}

#[test]
fn baseline_rust_yamux_sees_goes_goaway_as_the_end_of_everything() {
    // Hole 2: Go's GoAway(0) means "no new streams", but rust-yamux tears the connection down,
    // so the transfer under way fails. (The Go client in `go_goaway_mid_transfer_completes`
    // finishes the same transfer.)
    let Some(exe) = go_peer() else { return };
    let (_server, addr) = go_server(exe, &["-goaway-after", "100ms"]);
    run(async {
        let handle = rust_yamux_dial(&addr, yamux::Mode::Client).await;
        let stream = hang_guard(handle.open()).await.unwrap();
        let (mut reader, mut writer) = futures_lite::io::split(stream);
        let writing = async move {
            send_pattern(&mut writer, 300_000_000, 32 << 10).await?;
            writer.close().await
        };
        let (read, written) = hang_guard(future::zip(read_pattern(&mut reader), writing)).await;
        eprintln!("rust-yamux after Go's GoAway(0): read {read:?}, write {written:?}");
        assert!(
            read.is_err() || written.is_err(),
            "rust-yamux survived Go's GoAway(0) (hole 2 is gone?)"
        );
    });
}

#[test]
fn baseline_go_refuses_past_its_accept_backlog_with_rst() {
    // What our refusal tests rely on: Go, not accepting, RSTs the SYN past its backlog, and a
    // rust-yamux opener sees that stream reset while the session goes on.
    let Some(exe) = go_peer() else { return };
    let (mut server, addr) = go_server(exe, &["-accept-backlog", "4", "-hold-accept", "1s"]);
    run(async {
        let handle = rust_yamux_dial(&addr, yamux::Mode::Client).await;
        let mut results = Vec::new();
        for _ in 0..6 {
            let mut stream = hang_guard(handle.open()).await.unwrap();
            // rust-yamux opens lazily: the SYN rides on the first write.
            stream.write_all(b"hello").await.unwrap();
            stream.flush().await.unwrap();
            results.push(spawn(async move {
                stream.close().await?;
                let mut echo = Vec::new();
                stream.read_to_end(&mut echo).await?;
                io::Result::Ok(echo)
            }));
        }
        let mut echoed = 0;
        for result in results {
            match hang_guard(result).await {
                Ok(echo) if echo == b"hello" => echoed += 1,
                Ok(echo) => assert!(echo.is_empty(), "a reset stream read {echo:?}"),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
            }
        }
        // rust-yamux reads a reset stream as an early EOF (or fails the close).
        assert_eq!(
            echoed, 4,
            "the backlog's 4 streams echo, the other 2 are reset"
        );
    });
    expect_streams(&mut server, 4, "echoed 5 bytes");
}

// ----- echo, through mux_peer, both directions -----

#[test]
fn go_dials_mux_peer_and_every_stream_echoes() {
    let Some(exe) = go_peer() else { return };
    let mut server = Peer::spawn({
        let mut c = example("mux_peer");
        c.args(["serve", "--listen", "127.0.0.1:0", "--protocol", "yamux"]);
        c
    });
    let addr = server.listen_addr();
    for (streams, bytes) in ECHO_SIZES {
        let line = go_client(exe, &addr, &["-streams", streams, "-bytes", bytes]).expect_ok();
        assert!(
            line.contains(&format!("streams={streams} bytes={bytes}")),
            "{line}"
        );
    }
}

#[test]
fn mux_peer_dials_go_and_every_stream_echoes() {
    let Some(exe) = go_peer() else { return };
    let (mut server, addr) = go_server(exe, &[]);
    for (streams, bytes) in ECHO_SIZES {
        let client = Peer::spawn({
            let mut c = example("mux_peer");
            c.args(["client", "--connect", &addr, "--protocol", "yamux"])
                .args(["--streams", streams, "--bytes", bytes]);
            c
        });
        let line = client.expect_ok();
        assert!(
            line.contains(&format!("streams={streams} bytes={bytes}")),
            "{line}"
        );
        expect_streams(
            &mut server,
            streams.parse().unwrap(),
            &format!("echoed {bytes} bytes"),
        );
    }
}

#[test]
fn rust_yamux_dials_us_and_every_stream_echoes() {
    run(async {
        let (listener, addr) = listen().await;
        let handle = rust_yamux_dial(&addr, yamux::Mode::Client).await;
        let (mux, driver) = accept(&listener, config(Role::Server)).await;
        let _echo = spawn_echo_server(mux);
        rust_yamux_exchange(&handle, 1, 10_000_000).await;
        rust_yamux_exchange(&handle, 50, 1_000_000).await;
        drop(handle);
        let _ = ended(driver).await;
    });
}

#[test]
fn we_dial_rust_yamux_and_every_stream_echoes() {
    run(async {
        let (listener, addr) = listen().await;
        let (mux, driver) = dial(&addr, config(Role::Client)).await;
        let _echo = rust_yamux_echo_server(rust_yamux_accept(&listener).await);
        for (streams, bytes) in [(1, 10_000_000), (50, 1_000_000)] {
            let mut tasks = Vec::new();
            for _ in 0..streams {
                let stream = mux.open(b"").await.unwrap();
                tasks.push(spawn(exchange(stream, bytes, 32 << 10)));
            }
            for task in tasks {
                hang_guard(task).await;
            }
        }
        mux.close().await.unwrap();
        drop(mux);
        ended(driver).await.unwrap();
    });
}

// ----- many streams at once -----

#[test]
fn go_opens_600_streams_at_once() {
    // Past rust-yamux's 512-stream cap (hole 3), and past Go's 256 un-ACKed opens: Go's opens
    // go on only as we ACK what we accept.
    let Some(exe) = go_peer() else { return };
    run(async {
        let (listener, addr) = listen().await;
        let client = go_client(exe, &addr, &["-streams", "600", "-bytes", "10000"]);
        let (mux, driver) = accept(&listener, config(Role::Server)).await;
        let _echo = spawn_echo_server(mux);
        expect_ok(client).await;
        let _ = ended(driver).await;
    });
}

#[test]
fn we_open_600_streams_at_once_towards_go() {
    // Go's accept backlog is 256: we must hold our opens past 256 un-ACKed ones rather than
    // have Go reset them.
    let Some(exe) = go_peer() else { return };
    let (mut server, addr) = go_server(exe, &[]);
    run(async {
        let (mux, driver) = dial(&addr, config(Role::Client)).await;
        let mut tasks = Vec::new();
        for _ in 0..600 {
            let stream = hang_guard(mux.open(b"")).await.unwrap();
            tasks.push(spawn(exchange(stream, 10_000, 16 << 10)));
        }
        for task in tasks {
            hang_guard(task).await;
        }
        mux.close().await.unwrap();
        drop(mux);
        ended(driver).await.unwrap();
    });
    expect_streams(&mut server, 600, "echoed 10000 bytes");
}

// ----- half-close -----

#[test]
fn we_half_close_and_go_replies_after_our_eof() {
    let Some(exe) = go_peer() else { return };
    let (mut server, addr) = go_server(exe, &["-reply-after-eof"]);
    run(async {
        let (mux, driver) = dial(&addr, config(Role::Client)).await;
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let mut stream = mux.open(b"").await.unwrap();
            tasks.push(spawn(async move {
                send_pattern(&mut stream, 100_000, 16 << 10).await?;
                stream.close().await?; // FIN: Go's read ends; only then does it reply
                read_pattern(&mut stream).await
            }));
        }
        for task in tasks {
            assert_eq!(hang_guard(task).await.unwrap(), 100_000);
        }
        mux.close().await.unwrap();
        drop(mux);
        ended(driver).await.unwrap();
    });
    expect_streams(&mut server, 3, "echoed 100000 bytes");
}

#[test]
fn go_sends_fin_and_we_still_write_then_the_session_goes_on() {
    // Go reads nothing after its own FIN: the reply stays within its 256 KiB window.
    const BYTES: u64 = 100_000;
    let Some(exe) = go_peer() else { return };
    run(async {
        let (listener, addr) = listen().await;
        let args = ["-send-then-close", "-streams", "3", "-bytes", "100000"];
        let client = go_client(exe, &addr, &args);
        let (mux, driver) = accept(&listener, config(Role::Server)).await;
        for _ in 0..3 {
            let mut stream = hang_guard(mux.accept()).await.unwrap();
            assert_eq!(hang_guard(read_pattern(&mut stream)).await.unwrap(), BYTES);
            hang_guard(send_pattern(&mut stream, BYTES, 16 << 10))
                .await
                .unwrap();
            hang_guard(stream.close()).await.unwrap();
        }
        let stream = hang_guard(mux.accept()).await.unwrap();
        spawn(support::echo(stream)).detach();
        expect_ok(client).await;
        drop(mux);
        let _ = ended(driver).await;
    });
}

#[test]
fn half_close_both_ways_with_rust_yamux() {
    run(async {
        let (listener, addr) = listen().await;
        let (mux, driver) = dial(&addr, config(Role::Client)).await;
        let handle = rust_yamux_accept(&listener).await;
        // We write and half-close; rust-yamux reads to EOF, then replies and closes.
        let mut ours = mux.open(b"").await.unwrap();
        send_pattern(&mut ours, 100_000, 16 << 10).await.unwrap();
        ours.close().await.unwrap();
        let mut theirs = hang_guard(handle.accept()).await.unwrap();
        assert_eq!(
            hang_guard(read_pattern(&mut theirs)).await.unwrap(),
            100_000
        );
        send_pattern(&mut theirs, 100_000, 16 << 10).await.unwrap();
        theirs.close().await.unwrap();
        assert_eq!(hang_guard(read_pattern(&mut ours)).await.unwrap(), 100_000);
        // rust-yamux opens, writes and half-closes; we read to EOF, then reply.
        let mut theirs = hang_guard(handle.open()).await.unwrap();
        send_pattern(&mut theirs, 100_000, 16 << 10).await.unwrap();
        theirs.close().await.unwrap();
        let mut ours = hang_guard(mux.accept()).await.unwrap();
        assert_eq!(hang_guard(read_pattern(&mut ours)).await.unwrap(), 100_000);
        send_pattern(&mut ours, 100_000, 16 << 10).await.unwrap();
        ours.close().await.unwrap();
        assert_eq!(
            hang_guard(read_pattern(&mut theirs)).await.unwrap(),
            100_000
        );
        mux.close().await.unwrap();
        drop(mux);
        ended(driver).await.unwrap();
    });
}

// ----- RST -----

#[test]
fn our_abort_is_a_reset_for_go() {
    let Some(exe) = go_peer() else { return };
    let (mut server, addr) = go_server(exe, &[]);
    run(async {
        let (mux, driver) = dial(&addr, config(Role::Client)).await;
        let mut stream = mux.open(b"").await.unwrap();
        send_pattern(&mut stream, 100_000, 16 << 10).await.unwrap();
        stream.abort("enough");
        // The session goes on.
        let stream = mux.open(b"").await.unwrap();
        hang_guard(exchange(stream, 100_000, 16 << 10)).await;
        mux.close().await.unwrap();
        drop(mux);
        ended(driver).await.unwrap();
    });
    let lines = [
        server.line_starting("stream "),
        server.line_starting("stream "),
    ];
    assert!(
        lines.iter().any(|l| l.contains("connection reset")),
        "Go saw no reset: {lines:?}"
    );
}

#[test]
fn gos_refusal_past_its_backlog_resets_only_that_stream() {
    let Some(exe) = go_peer() else { return };
    let (mut server, addr) = go_server(exe, &["-accept-backlog", "4", "-hold-accept", "1s"]);
    run(async {
        let (mux, driver) = dial(&addr, config(Role::Client)).await;
        let mut results = Vec::new();
        for _ in 0..6 {
            let mut stream = mux.open(b"").await.unwrap();
            results.push(spawn(async move {
                stream.write_all(b"hello").await?;
                stream.close().await?;
                let mut echo = Vec::new();
                stream.read_to_end(&mut echo).await?;
                io::Result::Ok(echo)
            }));
        }
        let mut echoed = 0;
        for result in results {
            match hang_guard(result).await {
                Ok(echo) => {
                    assert_eq!(echo, b"hello");
                    echoed += 1;
                }
                Err(e) => assert!(
                    matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
                    ),
                    "{e}"
                ),
            }
        }
        assert_eq!(echoed, 4);
        mux.close().await.unwrap();
        drop(mux);
        ended(driver).await.unwrap();
    });
    expect_streams(&mut server, 4, "echoed 5 bytes");
}

#[test]
fn rust_yamux_dropping_an_open_stream_resets_ours() {
    run(async {
        let (listener, addr) = listen().await;
        let handle = rust_yamux_dial(&addr, yamux::Mode::Client).await;
        let (mux, driver) = accept(&listener, config(Role::Server)).await;
        let mut theirs = hang_guard(handle.open()).await.unwrap();
        theirs.write_all(b"hello").await.unwrap();
        theirs.flush().await.unwrap();
        let mut ours = hang_guard(mux.accept()).await.unwrap();
        let mut hello = [0; 5];
        ours.read_exact(&mut hello).await.unwrap();
        drop(theirs); // rust-yamux sends RST for a stream dropped while open
        let err = hang_guard(ours.read(&mut [0; 16])).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
        assert!(mux.is_alive());
        drop(handle);
        let _ = ended(driver).await;
    });
}

// ----- GoAway -----

#[test]
fn go_goaway_mid_transfer_completes_and_stops_new_opens() {
    // Hole 2 the other way round: rust-yamux drops everything at Go's GoAway(0); we finish.
    let Some(exe) = go_peer() else { return };
    let (mut server, addr) = go_server(exe, &["-goaway-after", "200ms"]);
    run(async {
        let (mux, driver) = dial(&addr, config(Role::Client)).await;
        let stream = mux.open(b"").await.unwrap();
        hang_guard(exchange(stream, 100_000_000, 64 << 10)).await;
        // Go said GoAway(0): no new streams, and the open says why.
        let err = mux.open(b"").await.unwrap_err();
        eprintln!("open after Go's GoAway(0): {err}");
        mux.close().await.unwrap();
        drop(mux);
        ended(driver).await.unwrap();
    });
    server.line_starting("sent goaway");
    expect_streams(&mut server, 1, "echoed 100000000 bytes");
}

#[test]
fn go_client_goaway_mid_transfer_completes() {
    let Some(exe) = go_peer() else { return };
    run(async {
        let (listener, addr) = listen().await;
        let args = [
            "-goaway-after",
            "200ms",
            "-bytes",
            "100000000",
            "-write-size",
            "65536",
        ];
        let client = go_client(exe, &addr, &args);
        let (mux, driver) = accept(&listener, config(Role::Server)).await;
        let stream = hang_guard(mux.accept()).await.unwrap();
        spawn(support::echo(stream)).detach();
        expect_ok(client).await;
        let _ = ended(driver).await;
    });
}

// ----- open, then close without data -----

#[test]
fn go_opens_then_closes_without_data_and_gets_our_fins() {
    let Some(exe) = go_peer() else { return };
    run(async {
        let (listener, addr) = listen().await;
        let client = go_client(exe, &addr, &["-open-then-close", "-streams", "5"]);
        let (mux, driver) = accept(&listener, config(Role::Server)).await;
        let _echo = spawn_echo_server(mux);
        expect_ok(client).await;
        let _ = ended(driver).await;
    });
}

#[test]
fn we_open_then_close_without_data_towards_go() {
    // Hole 4: rust-yamux sends such a FIN without SYN and hangs; our SYN must go out first.
    let Some(exe) = go_peer() else { return };
    let (mut server, addr) = go_server(exe, &[]);
    run(async {
        let (mux, driver) = dial(&addr, config(Role::Client)).await;
        for _ in 0..5 {
            let mut stream = mux.open(b"").await.unwrap();
            stream.close().await.unwrap();
            assert_eq!(hang_guard(read_pattern(&mut stream)).await.unwrap(), 0);
        }
        mux.close().await.unwrap();
        drop(mux);
        ended(driver).await.unwrap();
    });
    expect_streams(&mut server, 5, "echoed 0 bytes");
}

#[test]
fn rust_yamux_opens_then_closes_without_data() {
    // rust-yamux's FIN comes without SYN (YAMUX.md §5); against Go it then hangs. We take it
    // as the open and the close, and answer with our FIN.
    run(async {
        let (listener, addr) = listen().await;
        let handle = rust_yamux_dial(&addr, yamux::Mode::Client).await;
        let (mux, driver) = accept(&listener, config(Role::Server)).await;
        let _echo = spawn_echo_server(mux);
        for _ in 0..5 {
            let mut stream = hang_guard(handle.open()).await.unwrap();
            stream.close().await.unwrap();
            let mut rest = Vec::new();
            hang_guard(stream.read_to_end(&mut rest)).await.unwrap();
            assert!(rest.is_empty());
        }
        drop(handle);
        let _ = ended(driver).await;
    });
}

// ----- Go's large writes -----

#[test]
fn go_writes_of_16_mib_arrive_as_frames_over_1_mib() {
    // Hole 1: a Go Write goes out as one Data frame as large as the window we grant; rust-yamux
    // drops the session past 1 MiB. We accept anything within our window.
    let Some(exe) = go_peer() else { return };
    run(async {
        let (listener, addr) = listen().await;
        let args = [
            "-write-size",
            "16777216",
            "-bytes",
            "50000000",
            "-window",
            "16777216",
        ];
        let client = go_client(exe, &addr, &args);
        let (mux, driver) = accept(&listener, config(Role::Server)).await;
        let stream = hang_guard(mux.accept()).await.unwrap();
        spawn(support::echo(stream)).detach();
        expect_ok(client).await;
        let _ = ended(driver).await;
    });
}

// ----- keepalive -----

/// Go's keepalive in these tests: a Ping every 200 ms, the session closed when a reply takes
/// over 1 s.
const GO_KEEPALIVE: [&str; 4] = ["-keepalive-interval", "200ms", "-write-timeout", "1s"];

/// How long each side idles: several of Go's (and our) keepalive timeouts.
const IDLE: Duration = Duration::from_millis(3500);

fn keepalive_config(role: Role) -> Config {
    config(role)
        .ping_interval(Some(Duration::from_millis(200)))
        .ping_timeout(Duration::from_secs(1))
}

#[test]
fn keepalive_holds_an_idle_session_we_dialed() {
    let Some(exe) = go_peer() else { return };
    let (_server, addr) = go_server(exe, &GO_KEEPALIVE);
    run(async {
        let (mux, driver) = dial(&addr, keepalive_config(Role::Client)).await;
        sleep(IDLE).await;
        assert!(mux.is_alive(), "the session ended while idle");
        assert!(mux.last_rtt().is_some(), "our pings measured no round trip");
        let stream = mux.open(b"").await.unwrap();
        hang_guard(exchange(stream, 100_000, 16 << 10)).await;
        mux.close().await.unwrap();
        drop(mux);
        ended(driver).await.unwrap();
    });
}

#[test]
fn keepalive_holds_an_idle_session_go_dialed() {
    let Some(exe) = go_peer() else { return };
    let idle = format!("{}ms", IDLE.as_millis());
    run(async {
        let (listener, addr) = listen().await;
        let args = [&GO_KEEPALIVE[..], &["-idle", &idle, "-bytes", "100000"]].concat();
        let client = go_client(exe, &addr, &args);
        let (mux, driver) = accept(&listener, keepalive_config(Role::Server)).await;
        let _echo = spawn_echo_server(mux);
        expect_ok(client).await;
        let _ = ended(driver).await;
    });
}

#[test]
fn our_pings_do_not_upset_rust_yamux_which_never_times_out() {
    // rust-yamux answers our Pings and pings us; it ends the session for a pong it did not ask
    // for, so a live session after a few intervals means we sent none.
    run(async {
        let (listener, addr) = listen().await;
        let handle = rust_yamux_dial(&addr, yamux::Mode::Client).await;
        let (mux, driver) = accept(&listener, keepalive_config(Role::Server)).await;
        let _echo = spawn_echo_server(mux.clone());
        sleep(IDLE).await;
        assert!(mux.is_alive());
        assert!(mux.last_rtt().is_some());
        rust_yamux_exchange(&handle, 1, 100_000).await;
        drop(handle);
        let _ = ended(driver).await;
    });
}
