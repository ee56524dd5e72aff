//! Interop tests against the real picomux 0.1.18 crate, over loopback TCP.
//!
//! Every data test is an exact-length echo: the opener writes N bytes, the acceptor echoes exactly
//! N bytes back, the opener reads exactly N bytes and verifies them, and only then does anyone
//! close. That keeps the tests clear of picomux's truncation race (see "Known behaviours of
//! picomux 0.1.18" in PROTOCOL.md), where picomux can report EOF before the last bytes written just
//! before a close. Remember also that picomux treats a FIN as the end of both directions.
//!
//! picomux runs its own tasks on smolscale's threads; the smolmux side of each test runs on a
//! per-test `smol::Executor` driven by the test thread, so tests running in parallel do not share
//! one executor thread.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use futures_lite::future::{self, FutureExt as _};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use picomux::{LivenessConfig, PicoMux};
use smol::net::{TcpListener, TcpStream};
use smol::{Executor, Timer};
use smolmux::{Config, Mux};

/// A generous guard against hangs; no test comes near it when things work.
const HANG_GUARD: Duration = Duration::from_secs(60);

type Ex = Arc<Executor<'static>>;

/// Runs one test body on its own executor, failing it if it does not finish within `HANG_GUARD`.
fn run<F, Fut>(body: F)
where
    F: FnOnce(Ex) -> Fut,
    Fut: Future<Output = ()>,
{
    let ex: Ex = Arc::new(Executor::new());
    let test = body(ex.clone());
    let guard = async {
        Timer::after(HANG_GUARD).await;
        panic!("test did not finish within {HANG_GUARD:?} (hang)");
    };
    smol::block_on(ex.run(test.or(guard)));
}

/// Polls `cond` every 10 ms until it holds (the per-test hang guard bounds the wait).
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let mut polls = 0u64;
    while !cond() {
        polls += 1;
        if polls.is_multiple_of(1000) {
            eprintln!("still waiting for {what} after {polls} polls");
        }
        Timer::after(Duration::from_millis(10)).await;
    }
}

/// A connected pair of loopback TCP sockets.
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (connected, accepted) = future::zip(TcpStream::connect(addr), listener.accept()).await;
    (connected.unwrap(), accepted.unwrap().0)
}

/// A smolmux session on one end of a loopback connection and a picomux session on the other.
async fn session_pair(ex: &Ex, config: Config) -> (Mux, PicoMux) {
    let (a, b) = tcp_pair().await;
    let (mux, driver) = Mux::new(a.clone(), a, config);
    ex.spawn(async move {
        if let Err(err) = driver.await {
            eprintln!("smolmux driver ended with an error: {err}");
        }
    })
    .detach();
    let pico = PicoMux::new(b.clone(), b);
    (mux, pico)
}

/// Deterministic pseudo-random bytes, different for every seed, so that data crossing from one
/// stream into another is caught.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Asserts that `got` equals `want`, naming the first differing offset instead of dumping both.
fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: length differs");
    if let Some(at) = got.iter().zip(want).position(|(g, w)| g != w) {
        panic!(
            "{what}: first difference at byte {at} of {}: got {:#04x}, want {:#04x}",
            want.len(),
            got[at],
            want[at]
        );
    }
}

/// The opener's half of an exact-length echo: writes `data` while reading the same number of
/// bytes back (both in one future, on one stream), then checks them. Does not close.
async fn echo_from_opener<S>(stream: &mut S, data: &[u8], what: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    const CHUNK: usize = 100_000;
    let mut got = vec![0u8; data.len()];
    let (mut written, mut read, mut flushed) = (0, 0, false);
    let result = future::poll_fn(|cx| loop {
        let mut progress = false;
        if written < data.len() {
            let end = data.len().min(written + CHUNK);
            match Pin::new(&mut *stream).poll_write(cx, &data[written..end]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    written += n;
                    progress = true;
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {}
            }
        } else if !flushed {
            match Pin::new(&mut *stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    flushed = true;
                    progress = true;
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {}
            }
        }
        if read < got.len() {
            match Pin::new(&mut *stream).poll_read(cx, &mut got[read..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("EOF after {read} of {} echoed bytes", data.len()),
                    )))
                }
                Poll::Ready(Ok(n)) => {
                    read += n;
                    progress = true;
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {}
            }
        }
        if flushed && read == got.len() {
            return Poll::Ready(Ok(()));
        }
        if !progress {
            return Poll::Pending;
        }
    })
    .await;
    result.unwrap_or_else(|err| {
        panic!("{what}: opener echo failed (wrote {written}, read {read}): {err}")
    });
    assert_same(what, &got, data);
}

/// The acceptor's half of an exact-length echo: reads exactly `len` bytes and writes each chunk
/// back as it comes. Does not close.
async fn echo_exact<S>(stream: &mut S, len: usize, what: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 << 10];
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len());
        let n = stream
            .read(&mut buf[..want])
            .await
            .unwrap_or_else(|err| panic!("{what}: echo read failed with {left} bytes left: {err}"));
        assert!(
            n > 0,
            "{what}: echo read EOF with {left} of {len} bytes left"
        );
        stream
            .write_all(&buf[..n])
            .await
            .unwrap_or_else(|err| panic!("{what}: echo write failed: {err}"));
        left -= n;
    }
    stream
        .flush()
        .await
        .unwrap_or_else(|err| panic!("{what}: echo flush failed: {err}"));
}

/// Reads once and expects EOF.
async fn expect_eof<S: AsyncRead + Unpin>(stream: &mut S, what: &str) {
    let mut buf = [0u8; 16];
    let n = stream
        .read(&mut buf)
        .await
        .unwrap_or_else(|err| panic!("{what}: expected EOF, read failed: {err}"));
    assert_eq!(n, 0, "{what}: expected EOF, read {n} more bytes");
}

/// Waits until the smolmux session has forgotten every stream: each one fully closed on both
/// sides, nothing leaked.
async fn wait_streams_gone(mux: &Mux) {
    wait_until("smolmux streams to be released", || {
        mux.stats().open_streams == 0
    })
    .await;
    let stats = mux.stats();
    assert_eq!(stats.recv_buffered_bytes, 0, "{stats:?}");
    assert_eq!(stats.send_buffered_bytes, 0, "{stats:?}");
}

// ----- one big stream -----

/// picomux opens, smolmux accepts and echoes 10 MB; picomux verifies, then closes.
#[test]
fn picomux_opens_smolmux_accepts_10mb_echo() {
    run(|ex| async move {
        const LEN: usize = 10 << 20;
        let (mux, pico) = session_pair(&ex, Config::default()).await;

        let acceptor = ex.spawn({
            let mux = mux.clone();
            async move {
                let mut stream = mux.accept().await.unwrap();
                assert_eq!(stream.metadata(), b"picomux to smolmux");
                echo_exact(&mut stream, LEN, "smolmux echo").await;
                // picomux drops its stream only after verifying every byte; its FIN ends ours.
                expect_eof(&mut stream, "smolmux acceptor after the echo").await;
            }
        });

        let mut stream = pico.open(b"picomux to smolmux").await.unwrap();
        let data = pattern(1, LEN);
        echo_from_opener(&mut stream, &data, "picomux opener").await;
        drop(stream);
        acceptor.await;
        wait_streams_gone(&mux).await;
        assert!(mux.is_alive() && pico.is_alive());
    });
}

/// smolmux opens, picomux accepts and echoes 10 MB; smolmux verifies, then closes.
#[test]
fn smolmux_opens_picomux_accepts_10mb_echo() {
    run(|ex| async move {
        const LEN: usize = 10 << 20;
        let (mux, pico) = session_pair(&ex, Config::default()).await;
        let pico = Arc::new(pico);

        let acceptor = ex.spawn({
            let pico = pico.clone();
            async move {
                let mut stream = pico.accept().await.unwrap();
                assert_eq!(stream.metadata(), b"smolmux to picomux");
                echo_exact(&mut stream, LEN, "picomux echo").await;
                // smolmux closes only after verifying every byte.
                expect_eof(&mut stream, "picomux acceptor after the echo").await;
            }
        });

        let mut stream = mux.open(b"smolmux to picomux").await.unwrap();
        let data = pattern(2, LEN);
        echo_from_opener(&mut stream, &data, "smolmux opener").await;
        stream.close().await.unwrap();
        acceptor.await;
        // picomux answers our FIN with its own, which ends the stream here too.
        expect_eof(&mut stream, "smolmux opener after close").await;
        drop(stream);
        wait_streams_gone(&mux).await;
        assert!(mux.is_alive() && pico.is_alive());
    });
}

// ----- many streams at once -----

const MANY_STREAMS: usize = 50;
const MANY_LEN: usize = 1 << 20;

/// Accepts `MANY_STREAMS` streams with `accept` (which also names each one) and, on each, echoes
/// exactly `MANY_LEN` bytes and then expects EOF.
fn spawn_exact_echoes<S, A, Fut>(ex: &Ex, accept: A) -> smol::Task<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = (S, String)> + Send,
{
    let ex2 = ex.clone();
    ex.spawn(async move {
        let mut echoes = Vec::new();
        for _ in 0..MANY_STREAMS {
            let (mut stream, what) = accept().await;
            echoes.push(ex2.spawn(async move {
                echo_exact(&mut stream, MANY_LEN, &what).await;
                expect_eof(&mut stream, &what).await;
            }));
        }
        for echo in echoes {
            echo.await;
        }
    })
}

/// picomux opens 50 streams at once, smolmux echoes 1 MB on each.
#[test]
fn picomux_opens_50_streams_of_1mb() {
    run(|ex| async move {
        let (mux, pico) = session_pair(&ex, Config::default()).await;
        let pico = Arc::new(pico);

        let acceptor = spawn_exact_echoes(&ex, {
            let mux = mux.clone();
            move || {
                let mux = mux.clone();
                async move {
                    let stream = mux.accept().await.unwrap();
                    let what = format!(
                        "smolmux echo of {:?}",
                        String::from_utf8_lossy(stream.metadata())
                    );
                    (stream, what)
                }
            }
        });

        let mut openers = Vec::new();
        for i in 0..MANY_STREAMS {
            let pico = pico.clone();
            openers.push(ex.spawn(async move {
                let mut stream = pico.open(format!("stream {i}").as_bytes()).await.unwrap();
                let data = pattern(1000 + i as u64, MANY_LEN);
                echo_from_opener(&mut stream, &data, &format!("picomux stream {i}")).await;
                drop(stream);
            }));
        }
        for opener in openers {
            opener.await;
        }
        acceptor.await;
        wait_streams_gone(&mux).await;
        assert!(mux.is_alive() && pico.is_alive());
    });
}

/// smolmux opens 50 streams at once, picomux echoes 1 MB on each.
#[test]
fn smolmux_opens_50_streams_of_1mb() {
    run(|ex| async move {
        let (mux, pico) = session_pair(&ex, Config::default()).await;
        let pico = Arc::new(pico);

        let acceptor = spawn_exact_echoes(&ex, {
            let pico = pico.clone();
            move || {
                let pico = pico.clone();
                async move {
                    let stream = pico.accept().await.unwrap();
                    let what = format!(
                        "picomux echo of {:?}",
                        String::from_utf8_lossy(stream.metadata())
                    );
                    (stream, what)
                }
            }
        });

        let mut openers = Vec::new();
        for i in 0..MANY_STREAMS {
            let mux = mux.clone();
            openers.push(ex.spawn(async move {
                let mut stream = mux.open(format!("stream {i}").as_bytes()).await.unwrap();
                let data = pattern(2000 + i as u64, MANY_LEN);
                let what = format!("smolmux stream {i}");
                echo_from_opener(&mut stream, &data, &what).await;
                stream.close().await.unwrap();
                expect_eof(&mut stream, &what).await;
            }));
        }
        for opener in openers {
            opener.await;
        }
        acceptor.await;
        wait_streams_gone(&mux).await;
        assert!(mux.is_alive() && pico.is_alive());
    });
}

// ----- liveness -----

/// What a relay saw in one direction of the connection.
#[derive(Default)]
struct WireLog {
    pings: AtomicUsize,
    /// PINGs whose JSON carries `"smolmux": 1`.
    smolmux_pings: AtomicUsize,
    pongs: AtomicUsize,
    /// Frames that break PROTOCOL.md (wrong version, unknown command, bad PING or PONG body).
    violations: Mutex<Vec<String>>,
}

impl WireLog {
    fn check(&self) {
        let violations = self.violations.lock().unwrap();
        assert!(violations.is_empty(), "protocol violations: {violations:?}");
    }
}

/// Copies frames from `from` to `to`, logging liveness frames and protocol violations.
async fn relay(mut from: TcpStream, mut to: TcpStream, log: Arc<WireLog>) {
    loop {
        let mut frame = vec![0u8; 8];
        if from.read_exact(&mut frame).await.is_err() {
            break;
        }
        let (version, command) = (frame[0], frame[1]);
        let len = u16::from_le_bytes([frame[2], frame[3]]) as usize;
        let id = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        frame.resize(8 + len, 0);
        if from.read_exact(&mut frame[8..]).await.is_err() {
            break;
        }
        let body = &frame[8..];
        let violation = |what: String| log.violations.lock().unwrap().push(what);
        if version != 1 {
            violation(format!("version {version} in command {command:#04x}"));
        }
        match command {
            0x00..=0x04 => {}
            0xa0 => {
                log.pings.fetch_add(1, Ordering::SeqCst);
                match serde_json::from_slice::<serde_json::Value>(body) {
                    Ok(json) if json["next_ping_in_ms"].is_u64() => {
                        if json["smolmux"] == 1 {
                            log.smolmux_pings.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    _ => violation(format!("PING body {:?}", String::from_utf8_lossy(body))),
                }
                if id != 0 {
                    violation(format!("PING on stream {id}"));
                }
            }
            0xa1 => {
                log.pongs.fetch_add(1, Ordering::SeqCst);
                if !body.is_empty() {
                    violation(format!("PONG with a {}-byte body", body.len()));
                }
            }
            other => violation(format!("unknown command {other:#04x}")),
        }
        if to.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = to.close().await;
}

/// Like [`session_pair`], but through a relay that logs the frames each side sends.
async fn relayed_session_pair(
    ex: &Ex,
    config: Config,
) -> (Mux, PicoMux, Arc<WireLog>, Arc<WireLog>) {
    let (smol_end, relay_a) = tcp_pair().await;
    let (relay_b, pico_end) = tcp_pair().await;
    let (from_smolmux, from_picomux) = (Arc::new(WireLog::default()), Arc::new(WireLog::default()));
    ex.spawn(relay(
        relay_a.clone(),
        relay_b.clone(),
        from_smolmux.clone(),
    ))
    .detach();
    ex.spawn(relay(relay_b, relay_a, from_picomux.clone()))
        .detach();
    let (mux, driver) = Mux::new(smol_end.clone(), smol_end, config);
    ex.spawn(async move {
        if let Err(err) = driver.await {
            eprintln!("smolmux driver ended with an error: {err}");
        }
    })
    .detach();
    let pico = PicoMux::new(pico_end.clone(), pico_end);
    (mux, pico, from_smolmux, from_picomux)
}

/// picomux pings at session start; smolmux's PONG gives it a latency. Faster pings set later
/// keep being answered, one PONG per PING.
#[test]
fn picomux_ping_is_answered_by_smolmux() {
    run(|ex| async move {
        let config = Config::default().ping_interval(None);
        let (mux, mut pico, from_smolmux, from_picomux) = relayed_session_pair(&ex, config).await;
        wait_until("picomux last_latency", || pico.last_latency().is_some()).await;

        // picomux pings every 50 ms, each PING waiting for its PONG: five more PONGs means five
        // more PINGs were answered.
        pico.set_liveness(LivenessConfig {
            ping_interval: Duration::from_millis(50),
            timeout: Duration::from_secs(30),
        });
        wait_until("6 PONGs from smolmux", || {
            assert!(pico.is_alive(), "picomux session died while pinging");
            assert!(mux.is_alive(), "smolmux session died while being pinged");
            from_smolmux.pongs.load(Ordering::SeqCst) >= 6
        })
        .await;
        assert!(from_picomux.pings.load(Ordering::SeqCst) >= 6);
        assert_eq!(from_picomux.smolmux_pings.load(Ordering::SeqCst), 0);
        from_smolmux.check();
        from_picomux.check();
    });
}

/// smolmux's first PING (sent at session start, even with no ping interval, and carrying
/// `"smolmux": 1`) is answered by picomux.
#[test]
fn smolmux_first_ping_is_answered_by_picomux() {
    run(|ex| async move {
        let config = Config::default().ping_interval(None);
        let (mux, pico, from_smolmux, from_picomux) = relayed_session_pair(&ex, config).await;
        wait_until("smolmux last_rtt", || mux.last_rtt().is_some()).await;
        assert!(from_picomux.pongs.load(Ordering::SeqCst) >= 1);
        assert!(from_smolmux.smolmux_pings.load(Ordering::SeqCst) >= 1);
        assert!(mux.is_alive() && pico.is_alive());
        from_smolmux.check();
        from_picomux.check();
    });
}

/// smolmux's periodic PINGs (with the `"smolmux": 1` field) are answered by picomux again and
/// again. smolmux keeps one PING outstanding, so each PONG counted is a PING answered.
#[test]
fn smolmux_periodic_pings_are_answered_by_picomux() {
    run(|ex| async move {
        let config = Config::default()
            .ping_interval(Some(Duration::from_millis(200)))
            .ping_timeout(Duration::from_secs(30));
        let (mux, pico, from_smolmux, from_picomux) = relayed_session_pair(&ex, config).await;
        wait_until("smolmux last_rtt", || mux.last_rtt().is_some()).await;
        wait_until("5 PONGs from picomux", || {
            assert!(mux.is_alive(), "smolmux session died while pinging");
            assert!(pico.is_alive(), "picomux session died while being pinged");
            from_picomux.pongs.load(Ordering::SeqCst) >= 5
        })
        .await;
        assert!(mux.last_rtt().is_some());
        let pings = from_smolmux.pings.load(Ordering::SeqCst);
        assert!(pings >= 5);
        assert_eq!(from_smolmux.smolmux_pings.load(Ordering::SeqCst), pings);
        from_smolmux.check();
        from_picomux.check();
    });
}

/// Small messages on one stream beside a bulk echo on another, smolmux opening both: smolmux
/// interleaves the bulk data in smaller frames and keeps a PING in flight to measure the queue
/// ahead of the messages. picomux answers every such PING, and every byte on both streams comes
/// back intact.
#[test]
fn messages_beside_bulk_data_keep_picomux_answering_pings() {
    run(|ex| async move {
        const BULK: usize = 8 << 20;
        const MESSAGES: usize = 300;
        const MESSAGE: usize = 64;
        let (mux, pico, from_smolmux, from_picomux) =
            relayed_session_pair(&ex, Config::default()).await;
        let pico = Arc::new(pico);

        let acceptor = ex.spawn({
            let pico = pico.clone();
            let ex = ex.clone();
            async move {
                let mut echoes = Vec::new();
                for _ in 0..2 {
                    let mut stream = pico.accept().await.unwrap();
                    let (len, what) = match stream.metadata() {
                        b"bulk" => (BULK, "picomux bulk echo"),
                        _ => (MESSAGES * MESSAGE, "picomux message echo"),
                    };
                    echoes.push(ex.spawn(async move {
                        echo_exact(&mut stream, len, what).await;
                        expect_eof(&mut stream, what).await;
                    }));
                }
                for echo in echoes {
                    echo.await;
                }
            }
        });

        let mut bulk = mux.open(b"bulk").await.unwrap();
        let mut chat = mux.open(b"chat").await.unwrap();
        let bulk_echo = async {
            echo_from_opener(&mut bulk, &pattern(7, BULK), "smolmux bulk").await;
        };
        let messages = async {
            let mut reply = [0u8; MESSAGE];
            for k in 0..MESSAGES {
                let message = pattern(100 + k as u64, MESSAGE);
                chat.write_all(&message).await.unwrap();
                chat.flush().await.unwrap();
                chat.read_exact(&mut reply).await.unwrap();
                assert_same("message echo", &reply, &message);
            }
        };
        future::zip(bulk_echo, messages).await;
        for stream in [&mut bulk, &mut chat] {
            stream.close().await.unwrap();
        }
        acceptor.await;
        expect_eof(&mut bulk, "smolmux bulk after close").await;
        expect_eof(&mut chat, "smolmux chat after close").await;
        drop((bulk, chat));
        wait_streams_gone(&mux).await;
        assert!(mux.is_alive() && pico.is_alive());

        let (pings, pongs) = (
            from_smolmux.pings.load(Ordering::SeqCst),
            from_picomux.pongs.load(Ordering::SeqCst),
        );
        assert!(
            pings > 4,
            "only the 4 start-up PINGs went out ({pings}): the queue was not measured"
        );
        assert!(pongs + 1 >= pings, "{pings} PINGs, {pongs} PONGs");
        from_smolmux.check();
        from_picomux.check();
    });
}

// ----- FIN semantics -----

const FIN_LEN: usize = 200 << 10;

/// After a picomux FIN, the smolmux stream reads EOF and later writes fail with BrokenPipe
/// (PROTOCOL.md: a picomux peer's FIN ends both directions).
async fn check_picomux_fin_ends_smolmux_stream(mut stream: smolmux::Stream, what: &str) {
    expect_eof(&mut stream, what).await;
    let err = stream
        .write_all(b"after the peer's FIN")
        .await
        .expect_err("a write after a picomux FIN must fail");
    assert_eq!(
        err.kind(),
        io::ErrorKind::BrokenPipe,
        "{what}: write after picomux FIN: {err}"
    );
    // A second write fails the same way, and closing does not hang.
    let err = stream.write(b"x").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{what}: {err}");
    stream.close().await.unwrap();
}

/// picomux opens; after the echo, picomux drops its stream (FIN).
#[test]
fn picomux_fin_on_stream_it_opened_ends_smolmux_stream() {
    run(|ex| async move {
        let (mux, pico) = session_pair(&ex, Config::default()).await;
        let acceptor = ex.spawn({
            let mux = mux.clone();
            async move {
                let mut stream = mux.accept().await.unwrap();
                echo_exact(&mut stream, FIN_LEN, "smolmux echo").await;
                check_picomux_fin_ends_smolmux_stream(stream, "smolmux acceptor").await;
            }
        });
        let mut stream = pico.open(b"fin").await.unwrap();
        echo_from_opener(&mut stream, &pattern(3, FIN_LEN), "picomux opener").await;
        drop(stream);
        acceptor.await;
        wait_streams_gone(&mux).await;
        assert!(mux.is_alive() && pico.is_alive());
    });
}

/// smolmux opens; after the echo, picomux drops the stream it accepted (FIN).
#[test]
fn picomux_fin_on_stream_smolmux_opened_ends_smolmux_stream() {
    run(|ex| async move {
        let (mux, pico) = session_pair(&ex, Config::default()).await;
        let pico = Arc::new(pico);
        let (verified_tx, verified_rx) = smol::channel::bounded(1);
        let acceptor = ex.spawn({
            let pico = pico.clone();
            async move {
                let mut stream = pico.accept().await.unwrap();
                echo_exact(&mut stream, FIN_LEN, "picomux echo").await;
                // Close only once the opener confirms it has every byte (truncation race).
                verified_rx.recv().await.unwrap();
                drop(stream);
            }
        });
        let mut stream = mux.open(b"fin").await.unwrap();
        echo_from_opener(&mut stream, &pattern(4, FIN_LEN), "smolmux opener").await;
        verified_tx.send(()).await.unwrap();
        acceptor.await;
        check_picomux_fin_ends_smolmux_stream(stream, "smolmux opener").await;
        wait_streams_gone(&mux).await;
        assert!(mux.is_alive() && pico.is_alive());
    });
}

/// smolmux `close()` on a stream picomux opened: picomux reads EOF, and picomux's answering FIN
/// ends the smolmux stream too.
#[test]
fn smolmux_close_makes_picomux_read_eof() {
    run(|ex| async move {
        let (mux, pico) = session_pair(&ex, Config::default()).await;
        let (verified_tx, verified_rx) = smol::channel::bounded(1);
        let acceptor = ex.spawn({
            let mux = mux.clone();
            async move {
                let mut stream = mux.accept().await.unwrap();
                echo_exact(&mut stream, FIN_LEN, "smolmux echo").await;
                verified_rx.recv().await.unwrap();
                stream.close().await.unwrap();
                expect_eof(&mut stream, "smolmux acceptor after close").await;
            }
        });
        let mut stream = pico.open(b"close").await.unwrap();
        echo_from_opener(&mut stream, &pattern(5, FIN_LEN), "picomux opener").await;
        verified_tx.send(()).await.unwrap();
        expect_eof(&mut stream, "picomux opener after smolmux close").await;
        drop(stream);
        acceptor.await;
        wait_streams_gone(&mux).await;
        assert!(mux.is_alive() && pico.is_alive());
    });
}

/// Dropping a smolmux stream (no explicit close) that smolmux opened: picomux reads EOF.
#[test]
fn smolmux_drop_makes_picomux_read_eof() {
    run(|ex| async move {
        let (mux, pico) = session_pair(&ex, Config::default()).await;
        let pico = Arc::new(pico);
        let acceptor = ex.spawn({
            let pico = pico.clone();
            async move {
                let mut stream = pico.accept().await.unwrap();
                echo_exact(&mut stream, FIN_LEN, "picomux echo").await;
                expect_eof(&mut stream, "picomux acceptor after smolmux drop").await;
            }
        });
        let mut stream = mux.open(b"drop").await.unwrap();
        echo_from_opener(&mut stream, &pattern(6, FIN_LEN), "smolmux opener").await;
        drop(stream);
        acceptor.await;
        wait_streams_gone(&mux).await;
        assert!(mux.is_alive() && pico.is_alive());
    });
}

/// picomux drops a stream smolmux is still writing to: its FIN ends both directions, so the
/// writes fail promptly with BrokenPipe instead of queueing bytes that would never be sent, and
/// `close` then says whether written bytes were dropped unsent.
#[test]
fn picomux_fin_while_smolmux_writes_fails_the_writes_instead_of_queueing() {
    run(|ex| async move {
        let (mux, pico) = session_pair(&ex, Config::default()).await;
        let pico = Arc::new(pico);
        let acceptor = ex.spawn({
            let pico = pico.clone();
            async move {
                let mut stream = pico.accept().await.unwrap();
                let mut first = [0u8; 1];
                stream.read_exact(&mut first).await.unwrap();
                drop(stream);
            }
        });
        let mut stream = mux.open(b"cut short").await.unwrap();
        let chunk = pattern(9, 64 << 10);
        let mut written = 0u64;
        let err = loop {
            match stream.write(&chunk).await {
                Ok(n) => written += n as u64,
                Err(err) => break err,
            }
        };
        acceptor.await;
        assert_eq!(
            err.kind(),
            io::ErrorKind::BrokenPipe,
            "after {written} bytes: {err}"
        );
        match stream.close().await {
            Ok(()) => {}
            Err(err) => {
                assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
                assert!(err.to_string().contains("were not sent"), "{err}");
            }
        }
        drop(stream);
        wait_streams_gone(&mux).await;
        assert!(mux.is_alive() && pico.is_alive());
    });
}

/// The write half of a connection whose writes can be held back: while the gate is shut,
/// `poll_write` is pending, so the bytes a stream writes stay queued in the session above it.
struct GatedWriter {
    inner: TcpStream,
    gate: Arc<Gate>,
}

#[derive(Default)]
struct Gate {
    shut: std::sync::atomic::AtomicBool,
    waker: Mutex<Option<std::task::Waker>>,
}

impl Gate {
    fn set_shut(&self, shut: bool) {
        self.shut.store(shut, Ordering::SeqCst);
        if let Some(waker) = self.waker.lock().unwrap().take() {
            waker.wake();
        }
    }

    /// Pending while shut; the waker is stored before the second look, so opening the gate
    /// between the two looks still wakes the writer.
    fn poll_open(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if !self.shut.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        if self.shut.load(Ordering::SeqCst) {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

impl AsyncWrite for GatedWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.gate.poll_open(cx));
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<io::Result<()>> {
        std::task::ready!(self.gate.poll_open(cx));
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Bytes still queued when a picomux FIN arrives are never sent (picomux ended the stream), so
/// the `flush` and `close` that wait for them fail instead of reporting success. The connection
/// is held back on the smolmux side so that the bytes are certainly queued when the FIN comes.
#[test]
fn a_picomux_fin_while_bytes_wait_to_be_sent_fails_flush_and_close() {
    run(|ex| async move {
        let (a, b) = tcp_pair().await;
        let gate = Arc::new(Gate::default());
        let writer = GatedWriter {
            inner: a.clone(),
            gate: gate.clone(),
        };
        let (mux, driver) = Mux::new(a, writer, Config::default());
        ex.spawn(driver).detach();
        let pico = PicoMux::new(b.clone(), b);
        let (accepted_tx, accepted_rx) = smol::channel::bounded(1);
        let (drop_tx, drop_rx) = smol::channel::bounded::<()>(1);
        let acceptor = ex.spawn(async move {
            let mut stream = pico.accept().await.unwrap();
            let mut first = [0u8; 1];
            stream.read_exact(&mut first).await.unwrap();
            accepted_tx.send(()).await.unwrap();
            let _ = drop_rx.recv().await;
            drop(stream); // picomux answers with its FIN
            pico
        });
        let mut stream = mux.open(b"held back").await.unwrap();
        stream.write_all(b"x").await.unwrap();
        accepted_rx.recv().await.unwrap();

        gate.set_shut(true);
        // The driver takes one batch of what is written and then waits on the shut gate; fill
        // the send buffer behind it, until writes have stayed pending through many yields (the
        // driver, running meanwhile, would have made room had it not been stuck).
        let chunk = pattern(10, 16 << 10);
        let (mut queued, mut pending_polls) = (0usize, 0);
        while pending_polls < 100 {
            match future::poll_once(stream.write(&chunk)).await {
                Some(written) => {
                    queued += written.unwrap();
                    pending_polls = 0;
                }
                None => {
                    future::yield_now().await;
                    pending_polls += 1;
                }
            }
            assert!(
                queued < 64 << 20,
                "writes never waited with the connection held back"
            );
        }
        assert!(mux.stats().send_buffered_bytes > 0, "nothing queued");

        drop_tx.send(()).await.unwrap();
        let err = stream
            .flush()
            .await
            .expect_err("flush must fail: the queued bytes were dropped by the FIN");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
        assert!(err.to_string().contains("were not sent"), "{err}");
        let err = stream
            .close()
            .await
            .expect_err("close must fail the same way");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");

        gate.set_shut(false);
        let pico = acceptor.await;
        drop(stream);
        wait_streams_gone(&mux).await;
        assert!(mux.is_alive() && pico.is_alive());
    });
}
