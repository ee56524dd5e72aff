//! Fuzz harnesses, shared by the cargo-fuzz targets in `fuzz_targets/` and by the corpus replay
//! in `testsuite/tests/fuzz_replay.rs` (which runs them under `cargo test --workspace`).
//!
//! Both assert smolmux's promises about hostile input: no panic, memory within the configured
//! limits, and every error an `io::Error` with a message.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::future::{self, FutureExt as _};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smolmux::frame::{FrameIter, HEADER_LEN, MAX_BODY};
use smolmux::{Config, Mux, Protocol, Role};

/// The smux dialect and role a smux target's input picks with its first byte (bit 0: the
/// version, bit 1: the role), and the rest of the input.
pub fn smux_dialect(data: &[u8]) -> (Protocol, Role, &[u8]) {
    let (first, rest) = data.split_first().map_or((0, data), |(b, rest)| (*b, rest));
    let protocol = match first & 1 {
        0 => Protocol::SmuxV1,
        _ => Protocol::SmuxV2,
    };
    let role = match first & 2 {
        0 => Role::Client,
        _ => Role::Server,
    };
    (protocol, role, rest)
}

/// The role a yamux target's input picks with its first byte (bit 0), and the rest.
pub fn yamux_role(data: &[u8]) -> (Role, &[u8]) {
    let (first, rest) = data.split_first().map_or((0, data), |(b, rest)| (*b, rest));
    let role = match first & 1 {
        0 => Role::Client,
        _ => Role::Server,
    };
    (role, rest)
}

/// [`run_session_as`] in yamux, with the role the input's first byte picks.
pub fn run_yamux_session(data: &[u8]) -> Outcome {
    let (role, rest) = yamux_role(data);
    run_session_as(rest, Config::default().protocol(Protocol::Yamux).role(role))
}

/// [`decode_chunked_as`] for picomux.
pub fn decode_chunked(data: &[u8]) {
    decode_chunked_as(data, Protocol::Picomux);
}

/// Decodes `data` as `protocol`, split into chunks whose sizes come from the first bytes of the
/// input, the way the driver does, and checks that the frames match a decode of the whole
/// input.
pub fn decode_chunked_as(data: &[u8], protocol: Protocol) {
    let (sizes, stream) = data.split_at(data.len().min(8));
    let whole = decode_all(stream, protocol);

    let mut pending: Vec<u8> = Vec::new();
    let mut chunked = Vec::new();
    let mut offset = 0;
    let mut turn = 0;
    let mut failed = None;
    while offset < stream.len() && failed.is_none() {
        let size = 1 + sizes.get(turn % sizes.len().max(1)).copied().unwrap_or(255) as usize * 7;
        turn += 1;
        let end = (offset + size).min(stream.len());
        pending.extend_from_slice(&stream[offset..end]);
        offset = end;
        let mut frames = FrameIter::for_protocol(&pending, protocol);
        loop {
            match frames.next_frame() {
                Ok(Some((header, body))) => {
                    assert_eq!(body.len(), header.body_len as usize);
                    assert!(body.len() <= MAX_BODY);
                    chunked.push((header, body.to_vec()));
                }
                Ok(None) => break,
                Err(err) => {
                    failed = Some(err);
                    break;
                }
            }
        }
        let used = frames.consumed();
        pending.drain(..used);
        assert!(pending.len() < HEADER_LEN + MAX_BODY || failed.is_some());
    }
    assert_eq!(chunked, whole.0, "chunking changed the decoded frames");
    assert_eq!(failed, whole.1, "chunking changed the decode error");
    if let Some(err) = failed {
        assert!(!err.to_string().is_empty());
    }
}

type Decoded = (
    Vec<(smolmux::frame::Header, Vec<u8>)>,
    Option<smolmux::frame::ProtocolError>,
);

fn decode_all(stream: &[u8], protocol: Protocol) -> Decoded {
    let mut frames = FrameIter::for_protocol(stream, protocol);
    let mut out = Vec::new();
    loop {
        match frames.next_frame() {
            Ok(Some((header, body))) => out.push((header, body.to_vec())),
            Ok(None) => return (out, None),
            Err(err) => return (out, Some(err)),
        }
    }
}

/// The peer's side of the connection: hands out the fuzz input in chunks, then EOF once the
/// local script is done (so the session lives while the script runs).
struct ScriptedPeer {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
    stall: bool,
    script_done: Arc<AtomicBool>,
}

impl AsyncRead for ScriptedPeer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        // Alternate ready and pending reads, so the session sees partial progress.
        self.stall = !self.stall;
        let rest = &self.data[self.pos..];
        if (self.stall && !rest.is_empty())
            || (rest.is_empty() && !self.script_done.load(Ordering::Relaxed))
        {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = buf.len().min(self.chunk).min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Poll::Ready(Ok(n))
    }
}

/// Accepts and discards everything the session writes.
struct Sink;

impl AsyncWrite for Sink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn check_error(err: &io::Error) {
    assert!(
        !err.to_string().is_empty(),
        "error without a message: {err:?}"
    );
}

/// What a [`run_session`] did, so tests can check that the harness really drives the session.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Streams the script accepted from the peer.
    pub accepted: usize,
    /// Bytes the script read from streams.
    pub bytes_read: usize,
    /// How the driver ended.
    pub driver_error: Option<io::ErrorKind>,
}

/// [`run_session_as`] in picomux.
pub fn run_session(data: &[u8]) -> Outcome {
    run_session_as(data, Config::default())
}

/// Runs a whole session with `base`'s protocol and role against a peer that sends `data`
/// (after a short script of local operations taken from its first bytes), checking the
/// invariants after every step.
pub fn run_session_as(data: &[u8], base: Config) -> Outcome {
    let mut outcome = Outcome::default();
    let (script, peer_bytes) = data.split_at(data.len().min(32));
    let smux = base.protocol != Protocol::Picomux;
    let config = base
        .max_streams(16)
        .accept_backlog(4)
        .ping_interval(None)
        .stream_receive_buffer(Config::MIN_STREAM_RECEIVE_BUFFER)
        .session_receive_buffer(2 * Config::MIN_STREAM_RECEIVE_BUFFER)
        .stream_send_buffer(4096)
        .max_frame_body(1 + script.first().copied().unwrap_or(0) as usize * 100);
    let limit = config.session_receive_buffer + MAX_BODY;
    let send_limit = config.max_streams * config.stream_send_buffer;
    let script_done = Arc::new(AtomicBool::new(false));
    let peer = ScriptedPeer {
        data: peer_bytes.to_vec(),
        pos: 0,
        chunk: 1 + script.get(1).copied().unwrap_or(0) as usize * 37,
        stall: false,
        script_done: script_done.clone(),
    };
    let (mux, driver) = Mux::new(peer, Sink, config);

    let local = async {
        let mut streams = Vec::new();
        for &op in script.iter().cycle().take(256) {
            let stats = mux.stats();
            assert!(stats.recv_buffered_bytes <= limit, "{stats:?}");
            assert!(stats.send_buffered_bytes <= send_limit, "{stats:?}");
            let pick = op as usize >> 3;
            match op & 7 {
                // `try_open`: `open` would wait for a free slot that the script never frees.
                // smux and yamux streams carry no metadata: only an odd `pick` tries some (and
                // fails).
                0 => match mux.try_open(if smux && pick.is_multiple_of(2) {
                    &[]
                } else {
                    &script[..pick.min(script.len())]
                }) {
                    Ok(s) => streams.push(s),
                    Err(err) => check_error(&err),
                },
                1 => {
                    if let Some(Ok(s)) = future::poll_once(mux.accept()).await {
                        outcome.accepted += 1;
                        streams.push(s);
                    }
                }
                2 | 3 if !streams.is_empty() => {
                    let i = pick % streams.len();
                    let data = vec![op; pick * 50];
                    if let Some(Err(err)) = future::poll_once(streams[i].write(&data)).await {
                        check_error(&err);
                    }
                }
                4 if !streams.is_empty() => {
                    let i = pick % streams.len();
                    let mut buf = vec![0; pick * 100 + 1];
                    match future::poll_once(streams[i].read(&mut buf)).await {
                        Some(Ok(n)) => outcome.bytes_read += n,
                        Some(Err(err)) => check_error(&err),
                        None => {}
                    }
                }
                5 if !streams.is_empty() => {
                    let i = pick % streams.len();
                    if let Some(Err(err)) = future::poll_once(streams[i].close()).await {
                        check_error(&err);
                    }
                }
                6 if !streams.is_empty() => {
                    let i = pick % streams.len();
                    streams.swap_remove(i).abort("fuzz");
                }
                7 if !streams.is_empty() => {
                    streams.swap_remove(pick % streams.len());
                }
                _ => {}
            }
            // Let the driver run between operations, as a real application would.
            future::yield_now().await;
        }
        // Release what the script holds, so a full receive buffer cannot keep the driver from
        // reading on; once the peer's bytes run out the session ends, and nothing may hang.
        drop(streams);
        script_done.store(true, Ordering::Relaxed);
        while let Ok(stream) = mux.accept().await {
            drop(stream);
        }
        future::pending::<()>().await
    };
    let result = future::block_on(driver.or(async {
        local.await;
        Ok(())
    }));
    if let Err(err) = &result {
        check_error(err);
        outcome.driver_error = Some(err.kind());
    }
    // After the end, every operation fails promptly rather than hanging.
    let later = future::block_on(mux.accept());
    if let Err(err) = later {
        check_error(&err);
    }
    outcome
}
