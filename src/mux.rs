//! The user-facing handle of a session.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_io::{AsyncRead, AsyncWrite};

use crate::config::Config;
use crate::driver::Driver;
use crate::session::Session;
use crate::shared::Shared;
use crate::stats::Stats;
use crate::stream::Stream;

/// A handle to a multiplexed session: opens and accepts [`Stream`]s.
///
/// Each method lists the errors it returns; [the crate's error table](crate#errors) has them all.
///
/// `Mux` is cheap to clone, and every clone may be used from any task at once. The connection's
/// I/O happens in the [`Driver`] returned beside it by [`Mux::new`], which must be spawned (or
/// otherwise polled) for anything to happen. When every `Mux` clone is dropped, the session stops
/// opening and accepting streams (the ones waiting to be accepted are refused) and ends once
/// the streams still in use are done; once no `Stream` handle is left either,
/// [`Config::close_timeout`] bounds how long the peer may take to finish them.
///
/// ```
/// # smol::block_on(async {
/// use futures_lite::{AsyncReadExt, AsyncWriteExt};
/// use smolmux::{Config, Mux};
///
/// let listener = smol::net::TcpListener::bind("127.0.0.1:0").await?;
/// let client = smol::net::TcpStream::connect(listener.local_addr()?).await?;
/// let (server, _) = listener.accept().await?;
///
/// // A TCP stream can be cloned, so the read and write halves are just two clones.
/// let (a, driver_a) = Mux::new(client.clone(), client, Config::default());
/// let (b, driver_b) = Mux::new(server.clone(), server, Config::default());
/// smol::spawn(driver_a).detach();
/// smol::spawn(driver_b).detach();
///
/// let mut stream = a.open(b"greeting").await?; // no round trip: data may follow at once
/// stream.write_all(b"hello").await?;
///
/// let mut incoming = b.accept().await?;
/// assert_eq!(incoming.metadata(), b"greeting");
/// let mut buf = [0; 5];
/// incoming.read_exact(&mut buf).await?;
/// assert_eq!(&buf, b"hello");
/// # std::io::Result::Ok(()) }).unwrap();
/// ```
pub struct Mux {
    shared: Arc<Shared>,
    handles: Arc<AtomicUsize>,
}

impl Mux {
    /// Starts a session over a connection's read and write halves.
    ///
    /// Returns the handle and the [`Driver`], a future that does all of the connection's I/O and
    /// resolves when the session ends: spawn it on any executor. Both sides of a connection call
    /// `new`; there is no client or server role.
    ///
    /// An invalid `config` (see [`Config::validate`]) gives a session that has already ended: the
    /// driver and every operation fail with [`io::ErrorKind::InvalidInput`] naming the setting.
    pub fn new<R, W>(read: R, write: W, config: Config) -> (Mux, Driver)
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let shared = Arc::new(Shared::new(Session::new(config)));
        let driver = Driver::new(shared.clone(), read, write);
        let mux = Mux {
            shared,
            handles: Arc::new(AtomicUsize::new(1)),
        };
        (mux, driver)
    }

    /// Starts a session over one object that both reads and writes, such as a TLS stream.
    ///
    /// The object is split with [`futures_lite::io::split`], which puts a lock around it. When
    /// the halves can be had without a lock (a TCP stream can be cloned), prefer [`Mux::new`].
    pub fn from_io<T>(io: T, config: Config) -> (Mux, Driver)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (read, write) = futures_lite::io::split(io);
        Mux::new(read, write, config)
    }

    /// Opens a stream, sending `metadata` (at most 65,535 bytes) in its SYN.
    ///
    /// There is no round trip: the stream is ready to write at once, and its data follows the
    /// SYN. `open` waits, instead of failing, while the stream could not be taken:
    ///
    /// - a smolmux peer gives stream credits as its application accepts streams (100 at the
    ///   start of a session, then as many as its accept backlog takes), so a burst of any size
    ///   waits for the acceptor rather than being refused;
    /// - `max_streams` streams are open on our side: `open` waits for one to close.
    ///
    /// [`Mux::try_open`] fails at once instead. A picomux peer gives no credits: opens towards
    /// it are limited by `max_streams` only, and more than about 100 unaccepted streams at once
    /// may be refused by it (the stream then reads EOF).
    ///
    /// If the peer refuses the stream anyway (a smolmux peer whose `accept_backlog` or
    /// `max_streams` is below 100 can, at the start of a session, and so can one that is
    /// closing), the stream's reads and writes fail with [`io::ErrorKind::ConnectionRefused`].
    ///
    /// Fails with [`io::ErrorKind::NotConnected`] once either side has begun to close the
    /// session (also while waiting), with the session's error once it has ended, and with
    /// [`io::ErrorKind::InvalidInput`] if the metadata is too long.
    ///
    /// Until the peer accepts the stream and reads from it, it grants no credits beyond the
    /// protocol's initial 10 frames: once those and the stream's `stream_send_buffer` are full,
    /// writes wait. A peer that never accepts the stream holds them up until the stream is
    /// aborted or dropped, or the session ends.
    pub async fn open(&self, metadata: &[u8]) -> io::Result<Stream> {
        let metadata = Bytes::copy_from_slice(metadata);
        loop {
            if let Some(id) = self.shared.with(|s| s.app_open(metadata.clone()))? {
                return Ok(Stream::new(id, metadata[..].into(), self.shared.clone()));
            }
            let listener = self.shared.open_event.listen();
            if let Some(id) = self.shared.with(|s| s.app_open(metadata.clone()))? {
                return Ok(Stream::new(id, metadata[..].into(), self.shared.clone()));
            }
            listener.await;
        }
    }

    /// Opens a stream like [`Mux::open`], but fails at once with
    /// [`io::ErrorKind::WouldBlock`] where `open` would wait (the peer's stream credits are
    /// used up, or `max_streams` streams are open).
    pub fn try_open(&self, metadata: &[u8]) -> io::Result<Stream> {
        let id = self.shared.with(|s| {
            s.app_open(Bytes::copy_from_slice(metadata))?
                .ok_or_else(|| s.open_blocked_error())
        })?;
        Ok(Stream::new(id, metadata.into(), self.shared.clone()))
    }

    /// Waits for the next stream opened by the peer.
    ///
    /// Streams that arrived before the session began to close are still handed out; after
    /// that, fails with [`io::ErrorKind::NotConnected`] (either side is closing) or with the
    /// session's error (it has ended).
    pub async fn accept(&self) -> io::Result<Stream> {
        loop {
            if let Some(accepted) = self.shared.with(|s| s.app_accept()) {
                let (id, metadata) = accepted?;
                return Ok(Stream::new(id, metadata, self.shared.clone()));
            }
            let listener = self.shared.accept_event.listen();
            if let Some(accepted) = self.shared.with(|s| s.app_accept()) {
                let (id, metadata) = accepted?;
                return Ok(Stream::new(id, metadata, self.shared.clone()));
            }
            listener.await;
        }
    }

    /// Closes the session gracefully.
    ///
    /// No new streams are opened or accepted on either side from now on (the peer learns it at
    /// once: its `open` fails with [`io::ErrorKind::NotConnected`]); streams waiting to be
    /// accepted are refused; every stream sends FIN after its queued bytes. The streams then
    /// finish both ways: credits keep flowing, so the peer's replies still arrive and can be
    /// read. Once every stream is done, both sessions end and both drivers resolve `Ok(())`.
    ///
    /// Returns `Ok(())` once the session has ended so. Past [`Config::close_timeout`] the
    /// streams still open are aborted (their peers see [`io::ErrorKind::ConnectionReset`]), the
    /// session ends, and `close` fails with [`io::ErrorKind::TimedOut`]. If the session ended
    /// otherwise first, `close` fails with its error.
    ///
    /// Between smolmux peers the end needs nothing from the transport, so a connection whose
    /// `close` does not shut the socket down (async-std's `TcpStream` only flushes) ends too.
    /// A picomux peer knows no such exchange: towards it, `close` returns once every FIN is out
    /// and the connection's write half is closed with the writer's `poll_close`, and the
    /// session ends at the peer's EOF (with async-std, call `shutdown(Shutdown::Write)` on the
    /// socket afterwards so that the peer sees the end).
    pub async fn close(&self) -> io::Result<()> {
        self.shared.with(|s| s.app_close_session(Instant::now()));
        loop {
            let done = || self.shared.with(|s| s.close_outcome());
            if let Some(result) = done() {
                return result;
            }
            let listener = self.shared.state_event.listen();
            if let Some(result) = done() {
                return result;
            }
            listener.await;
        }
    }

    /// Whether the session is still running.
    pub fn is_alive(&self) -> bool {
        self.shared.with(|s| s.end().is_none())
    }

    /// The round-trip time measured by the latest PING and its PONG, if any has completed.
    pub fn last_rtt(&self) -> Option<Duration> {
        self.shared.with(|s| s.last_rtt())
    }

    /// A snapshot of the session's counters.
    pub fn stats(&self) -> Stats {
        self.shared.with(|s| s.stats())
    }
}

impl Clone for Mux {
    fn clone(&self) -> Self {
        self.handles.fetch_add(1, Ordering::Relaxed);
        Mux {
            shared: self.shared.clone(),
            handles: self.handles.clone(),
        }
    }
}

impl Drop for Mux {
    fn drop(&mut self) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.with(|s| s.app_drop_mux(Instant::now()));
        }
    }
}

impl fmt::Debug for Mux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mux")
            .field("alive", &self.is_alive())
            .field("stats", &self.stats())
            .finish()
    }
}
