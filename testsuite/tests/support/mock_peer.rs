//! A scripted raw-frame peer over loopback TCP: the test writes exact bytes (well-formed or not)
//! and reads back the mux's frames one at a time.

use std::io;
use std::net::Shutdown;
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::future::FutureExt as _;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smol::{Task, Timer};
use smolmux::frame::{encode_frame, Command, Header, PingInfo, Signal, HEADER_LEN, VERSION};
use smolmux::{Config, Driver, Mux};

use super::{spawn, tcp_pair};

/// How long [`MockPeer::next_frame`] and friends wait for a frame before failing the test.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// A frame received from the mux.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub command: Command,
    pub stream_id: u32,
    pub body: Vec<u8>,
}

impl Frame {
    /// PING, PONG, or a STREAMS grant: session upkeep that tests of stream frames skip.
    pub fn is_liveness(&self) -> bool {
        matches!(self.command, Command::Ping | Command::Pong)
            || (self.command == Command::Nop
                && matches!(Signal::decode(&self.body), Some(Signal::MoreStreams(_))))
    }
}

// ----- frame builders -----

fn frame(command: Command, id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(&mut out, command, id, body);
    out.to_vec()
}

pub fn syn(id: u32, metadata: &[u8]) -> Vec<u8> {
    frame(Command::Syn, id, metadata)
}

pub fn psh(id: u32, data: &[u8]) -> Vec<u8> {
    frame(Command::Psh, id, data)
}

/// An empty FIN: half-close (or a refusal).
pub fn fin(id: u32) -> Vec<u8> {
    frame(Command::Fin, id, b"")
}

/// A FIN with a reason: abort.
pub fn abort(id: u32, reason: &str) -> Vec<u8> {
    frame(Command::Fin, id, reason.as_bytes())
}

pub fn more(id: u32, credits: u16) -> Vec<u8> {
    frame(Command::More, id, &credits.to_le_bytes())
}

pub fn nop(id: u32) -> Vec<u8> {
    frame(Command::Nop, id, b"")
}

/// A PING with a well-formed JSON body; `smolmux` announces the extensions.
pub fn ping(next_ping_in_ms: u32, smolmux: bool) -> Vec<u8> {
    let mut out = BytesMut::new();
    PingInfo {
        next_ping_in_ms,
        smolmux,
    }
    .encode_frame(&mut out);
    out.to_vec()
}

/// A PING with an arbitrary body.
pub fn ping_raw(body: &[u8]) -> Vec<u8> {
    frame(Command::Ping, 0, body)
}

pub fn pong() -> Vec<u8> {
    frame(Command::Pong, 0, b"")
}

/// A frame with arbitrary header fields; `body_len` is the body's real length.
pub fn raw_frame(version: u8, command: u8, id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = raw_header(version, command, body.len() as u16, id);
    out.extend_from_slice(body);
    out
}

/// Just a header, whose `body_len` need not match what follows.
pub fn raw_header(version: u8, command: u8, body_len: u16, id: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.push(version);
    out.push(command);
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out
}

/// Concatenates frames.
pub fn concat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

// ----- the peer -----

pub struct MockPeer {
    pub tcp: TcpStream,
    buf: Vec<u8>,
    /// Answer the mux's PINGs with PONG while skipping frames in [`MockPeer::expect`].
    pub answer_pings: bool,
}

/// A mux over one end of a loopback connection (driver spawned) and a mock peer on the other.
pub async fn mock_pair(config: Config) -> (Mux, Task<io::Result<()>>, MockPeer) {
    let (mux, driver, mock) = mock_pair_unspawned(config).await;
    (mux, spawn(driver), mock)
}

/// Like [`mock_pair`], but the caller spawns (or wraps) the driver.
pub async fn mock_pair_unspawned(config: Config) -> (Mux, Driver, MockPeer) {
    let (mux_side, mock_side) = tcp_pair().await;
    let (mux, driver) = Mux::new(mux_side.clone(), mux_side, config);
    (mux, driver, MockPeer::new(mock_side))
}

impl MockPeer {
    pub fn new(tcp: TcpStream) -> Self {
        MockPeer {
            tcp,
            buf: Vec::new(),
            answer_pings: true,
        }
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.expect("mock peer write");
        self.tcp.flush().await.expect("mock peer flush");
    }

    /// Closes the mock's write half: the mux reads EOF after what was sent.
    pub fn shutdown_write(&self) {
        self.tcp
            .shutdown(Shutdown::Write)
            .expect("mock peer shutdown");
    }

    /// The next frame, `Ok(None)` at EOF on a frame boundary, `TimedOut` if none came within
    /// `timeout`, `UnexpectedEof` at EOF inside a frame, `InvalidData` for a bad header. Cancel
    /// safe: bytes already read stay buffered.
    pub async fn try_next_frame(&mut self, timeout: Duration) -> io::Result<Option<Frame>> {
        let mut deadline = Timer::after(timeout);
        loop {
            if self.buf.len() >= HEADER_LEN {
                let head: [u8; HEADER_LEN] = self.buf[..HEADER_LEN].try_into().unwrap();
                let header = Header::decode(&head)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let end = HEADER_LEN + header.body_len as usize;
                if self.buf.len() >= end {
                    let body = self.buf[HEADER_LEN..end].to_vec();
                    self.buf.drain(..end);
                    return Ok(Some(Frame {
                        command: header.command,
                        stream_id: header.stream_id,
                        body,
                    }));
                }
            }
            let mut chunk = vec![0u8; 64 << 10];
            let read = async { Some(self.tcp.read(&mut chunk).await) };
            let timed_out = async {
                (&mut deadline).await;
                None
            };
            match read.or(timed_out).await {
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no frame from the mux within {timeout:?}"),
                    ))
                }
                Some(Ok(0)) if self.buf.is_empty() => return Ok(None),
                Some(Ok(0)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("EOF inside a frame ({} bytes)", self.buf.len()),
                    ))
                }
                Some(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Some(Err(err)) => return Err(err),
            }
        }
    }

    /// The next frame; fails the test at EOF, on error, or after [`FRAME_TIMEOUT`].
    pub async fn next_frame(&mut self) -> Frame {
        match self.try_next_frame(FRAME_TIMEOUT).await {
            Ok(Some(frame)) => frame,
            Ok(None) => panic!("mock peer: connection closed while a frame was expected"),
            Err(err) => panic!("mock peer: {err}"),
        }
    }

    /// The next frame that is not PING, PONG or a STREAMS grant (PINGs are answered if
    /// `answer_pings`).
    pub async fn next_non_liveness(&mut self) -> Frame {
        loop {
            let frame = self.next_frame().await;
            match frame.command {
                Command::Ping => {
                    PingInfo::decode(&frame.body).expect("the mux's PING body must parse");
                    if self.answer_pings {
                        self.send(&pong()).await;
                    }
                }
                _ if frame.is_liveness() => {}
                _ => return frame,
            }
        }
    }

    /// Expects the next non-liveness frame to be `command` on stream `id`; returns it. Unless a
    /// MORE is expected, MOREs are skipped: when a grant goes out depends on how far the
    /// application has read, which tests of other frames should not pin.
    pub async fn expect(&mut self, command: Command, id: u32) -> Frame {
        let mut frame = self.next_non_liveness().await;
        while command != Command::More && frame.command == Command::More {
            frame = self.next_non_liveness().await;
        }
        assert_eq!(
            (frame.command, frame.stream_id),
            (command, id),
            "unexpected frame from the mux: {frame:?}"
        );
        frame
    }

    /// Expects the very next frame to be a PING; returns what it says.
    pub async fn expect_ping(&mut self) -> PingInfo {
        let frame = self.next_frame().await;
        assert_eq!(frame.command, Command::Ping, "expected PING, got {frame:?}");
        assert_eq!(frame.stream_id, 0);
        PingInfo::decode(&frame.body).expect("the mux's PING body must parse")
    }

    /// The usual start: the mux's first frame is its PING announcing smolmux; answer it, and
    /// announce smolmux ourselves so that empty FINs are half-closes.
    pub async fn handshake(&mut self) {
        let info = self.expect_ping().await;
        assert!(info.smolmux, "the mux's first PING must announce smolmux");
        self.send(&concat(&[pong(), ping(1_800_000, true)])).await;
    }

    /// Reads (skipping liveness frames) until the mux closes the connection.
    pub async fn expect_eof(&mut self) {
        loop {
            match self.try_next_frame(FRAME_TIMEOUT).await {
                Ok(None) => return,
                Ok(Some(frame)) if frame.is_liveness() => {}
                Ok(Some(frame)) => panic!("expected EOF, got {frame:?}"),
                // A reset after the mux dropped its socket is as good as EOF here.
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset => return,
                Err(err) => panic!("expected EOF: {err}"),
            }
        }
    }

    /// Reads and discards everything the mux sends, in a task, until EOF; returns the byte
    /// count. Writes through `self.tcp` still work.
    pub fn spawn_drain(&self) -> Task<u64> {
        let mut tcp = self.tcp.clone();
        spawn(async move {
            let mut total = 0u64;
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n as u64,
                }
            }
        })
    }
}

/// The version byte a well-formed frame carries (re-exported for readability in tests).
pub const GOOD_VERSION: u8 = VERSION;
