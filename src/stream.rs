//! The user-facing handle of one stream.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_io::{AsyncRead, AsyncWrite};
#[cfg(doc)]
use futures_lite::AsyncWriteExt;

use crate::shared::Shared;

/// One logical byte stream of a session, in both directions.
///
/// A `Stream` is [`AsyncRead`] + [`AsyncWrite`]; use it with the extension traits of
/// `futures-lite` or `futures`. Its state lives in the session and the connection's driver does
/// its I/O, so a stream costs no task and little memory.
///
/// - **Writing** copies bytes into the stream's send buffer (at most
///   [`Config::stream_send_buffer`](crate::Config::stream_send_buffer)); the driver sends them in
///   order as the peer grants credits. `flush` waits until they are handed to the connection.
/// - **Closing** (`close`, or `poll_close`) is a half-close: the queued bytes go out, then FIN.
///   The stream can still be read until the peer's FIN, after which reads return 0 (EOF).
/// - **Dropping** a stream that was not closed sends FIN after the bytes already written, and
///   tells a smolmux peer to stop sending: its writes fail with [`io::ErrorKind::BrokenPipe`].
///   Data that still arrives is discarded.
/// - [`Stream::abort`] resets both directions, at any time until both are done, and tells the
///   peer why.
/// - No write reports success for bytes that are lost: once the peer stopped reading or ended
///   the stream, `write` fails, and `flush` and `close` fail if written bytes were dropped.
///
/// # Errors
///
/// What each operation can fail with (the [crate's error table](crate#errors) says what each
/// kind means and what to do about it):
///
/// - **reads**: `ConnectionRefused` (the peer refused the stream), `ConnectionReset` (aborted by
///   either side, or reset by the receive budget), or the session's end: `NotConnected`,
///   `TimedOut`, `ConnectionAborted`, `InvalidData`, `UnexpectedEof` or the connection's own
///   error. Bytes received before the end are read first.
/// - **writes**: the same, and `BrokenPipe` after our own `close`, after the peer stopped
///   reading, or after a picomux peer's FIN.
/// - **`flush` and `close`**: `BrokenPipe` only when written bytes were dropped unsent (the
///   message says how many), `ConnectionRefused`, `ConnectionReset`, or the session's end before
///   everything written (for `close`, the FIN too) was handed to the connection.
///
/// With a picomux peer (one that does not announce smolmux's extensions), a FIN ends the whole
/// stream as picomux means it: reads return EOF, and writes fail with
/// [`io::ErrorKind::BrokenPipe`].
///
/// ```
/// # smol::block_on(async {
/// # let listener = smol::net::TcpListener::bind("127.0.0.1:0").await?;
/// # let client = smol::net::TcpStream::connect(listener.local_addr()?).await?;
/// # let (server, _) = listener.accept().await?;
/// # let (a, driver_a) = smolmux::Mux::new(client.clone(), client, smolmux::Config::default());
/// # let (b, driver_b) = smolmux::Mux::new(server.clone(), server, smolmux::Config::default());
/// # smol::spawn(driver_a).detach();
/// # smol::spawn(driver_b).detach();
/// use futures_lite::{AsyncReadExt, AsyncWriteExt};
///
/// let mut stream = a.open(b"hello").await?;
/// stream.write_all(b"ping").await?;
/// stream.close().await?; // half-close: the peer reads EOF after "ping"
///
/// let mut peer = b.accept().await?;
/// assert_eq!(peer.metadata(), b"hello");
/// let mut got = Vec::new();
/// peer.read_to_end(&mut got).await?;
/// assert_eq!(got, b"ping");
/// peer.write_all(b"pong").await?; // the other direction is still open
/// peer.close().await?;
///
/// let mut reply = Vec::new();
/// stream.read_to_end(&mut reply).await?;
/// assert_eq!(reply, b"pong");
/// # std::io::Result::Ok(()) }).unwrap();
/// ```
pub struct Stream {
    handle: Handle,
}

/// What a stream's handles share: its id, its metadata and the session. Dropping it is the end
/// of every handle of the stream.
struct Handle {
    id: u32,
    /// A boxed slice, not `Bytes`: every handle carries it, and it is half the size.
    metadata: Box<[u8]>,
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.with(|s| s.app_drop(self.id, Instant::now()));
    }
}

impl Handle {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        ready(self.shared.with(|s| s.app_read(self.id, buf, cx.waker())))
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready(self.shared.with(|s| s.app_write(self.id, buf, cx.waker())))
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready(self.shared.with(|s| s.app_flush(self.id, cx.waker())))
    }

    fn poll_close(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready(self.shared.with(|s| s.app_close(self.id, cx.waker())))
    }

    fn abort(&self, reason: &str) {
        self.shared.with(|s| s.app_abort(self.id, reason));
    }
}

impl Stream {
    pub(crate) fn new(id: u32, metadata: Box<[u8]>, shared: Arc<Shared>) -> Self {
        Stream {
            handle: Handle {
                id,
                metadata,
                shared,
            },
        }
    }

    /// The metadata the opener sent with the stream's SYN.
    pub fn metadata(&self) -> &[u8] {
        &self.handle.metadata
    }

    /// The stream's id on the wire.
    pub fn id(&self) -> u32 {
        self.handle.id
    }

    /// Splits the stream into a read half and a write half that can be used from different
    /// tasks at once, with no lock beyond the session's own (unlike
    /// `futures_lite::io::split`).
    ///
    /// Dropping the [`WriteHalf`] ends our direction as [`close`](AsyncWriteExt::close) does
    /// (the bytes written still go, then FIN); dropping the [`ReadHalf`] tells a smolmux peer
    /// to stop sending (its writes fail with [`io::ErrorKind::BrokenPipe`]); once both are gone
    /// the stream is dropped.
    ///
    /// ```
    /// # smol::block_on(async {
    /// # let listener = smol::net::TcpListener::bind("127.0.0.1:0").await?;
    /// # let client = smol::net::TcpStream::connect(listener.local_addr()?).await?;
    /// # let (server, _) = listener.accept().await?;
    /// # let (a, driver_a) = smolmux::Mux::new(client.clone(), client, smolmux::Config::default());
    /// # let (b, driver_b) = smolmux::Mux::new(server.clone(), server, smolmux::Config::default());
    /// # smol::spawn(driver_a).detach();
    /// # smol::spawn(driver_b).detach();
    /// use futures_lite::{io, AsyncReadExt, AsyncWriteExt};
    ///
    /// // An echo server: copy what comes in back out, on two halves of one stream.
    /// smol::spawn(async move {
    ///     let (mut reader, mut writer) = b.accept().await?.split();
    ///     io::copy(&mut reader, &mut writer).await?;
    ///     writer.close().await
    /// })
    /// .detach();
    ///
    /// let (mut reader, mut writer) = a.open(b"").await?.split();
    /// let reply = smol::spawn(async move {
    ///     let mut reply = Vec::new();
    ///     reader.read_to_end(&mut reply).await.map(|_| reply)
    /// });
    /// writer.write_all(b"hello").await?;
    /// drop(writer); // FIN, like close
    /// assert_eq!(reply.await?, b"hello");
    /// # std::io::Result::Ok(()) }).unwrap();
    /// ```
    pub fn split(self) -> (ReadHalf, WriteHalf) {
        let handle = Arc::new(self.handle);
        (
            ReadHalf {
                handle: handle.clone(),
            },
            WriteHalf { handle },
        )
    }

    /// Aborts the stream in both directions. Unsent and unread bytes are discarded; the peer's
    /// pending and later reads and writes fail with [`io::ErrorKind::ConnectionReset`] and
    /// `reason` (between smolmux peers; a picomux peer sees a plain close). Later operations
    /// here fail too. This works at any time until both directions are done, also after our
    /// [`close`](futures_lite::AsyncWriteExt::close) (to cancel a reply that is still
    /// streaming) or after the peer's. A stream aborted before the peer accepted it is dropped
    /// from the peer's backlog unseen.
    ///
    /// ```
    /// # smol::block_on(async {
    /// # let listener = smol::net::TcpListener::bind("127.0.0.1:0").await?;
    /// # let client = smol::net::TcpStream::connect(listener.local_addr()?).await?;
    /// # let (server, _) = listener.accept().await?;
    /// # let (a, driver_a) = smolmux::Mux::new(client.clone(), client, smolmux::Config::default());
    /// # let (b, driver_b) = smolmux::Mux::new(server.clone(), server, smolmux::Config::default());
    /// # smol::spawn(driver_a).detach();
    /// # smol::spawn(driver_b).detach();
    /// use futures_lite::AsyncReadExt;
    ///
    /// let stream = a.open(b"").await?;
    /// let mut peer = b.accept().await?;
    /// stream.abort("no longer needed");
    ///
    /// let err = peer.read(&mut [0; 16]).await.unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    /// assert!(err.to_string().contains("no longer needed"));
    /// # std::io::Result::Ok(()) }).unwrap();
    /// ```
    pub fn abort(&self, reason: &str) {
        self.handle.abort(reason);
    }
}

/// Turns the session's answer into a poll result: `None` means the waker was registered.
fn ready<T>(answer: Option<io::Result<T>>) -> Poll<io::Result<T>> {
    match answer {
        Some(result) => Poll::Ready(result),
        None => Poll::Pending,
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.handle.poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.handle.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.handle.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.handle.poll_close(cx)
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id())
            .field("metadata_len", &self.metadata().len())
            .finish()
    }
}

/// The read half of a [`Stream`], from [`Stream::split`].
///
/// Dropping it tells a smolmux peer to stop sending; what still arrives is discarded.
pub struct ReadHalf {
    handle: Arc<Handle>,
}

/// The write half of a [`Stream`], from [`Stream::split`].
///
/// Dropping it ends our direction like [`close`](AsyncWriteExt::close): the bytes written go,
/// then FIN.
pub struct WriteHalf {
    handle: Arc<Handle>,
}

impl ReadHalf {
    /// The stream's id on the wire.
    pub fn id(&self) -> u32 {
        self.handle.id
    }

    /// Aborts the whole stream, both directions (see [`Stream::abort`]).
    pub fn abort(&self, reason: &str) {
        self.handle.abort(reason);
    }
}

impl WriteHalf {
    /// The stream's id on the wire.
    pub fn id(&self) -> u32 {
        self.handle.id
    }

    /// Aborts the whole stream, both directions (see [`Stream::abort`]).
    pub fn abort(&self, reason: &str) {
        self.handle.abort(reason);
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.handle.poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.handle.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.handle.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.handle.poll_close(cx)
    }
}

impl Drop for ReadHalf {
    fn drop(&mut self) {
        let id = self.handle.id;
        self.handle.shared.with(|s| s.app_drop_reader(id));
    }
}

impl Drop for WriteHalf {
    fn drop(&mut self) {
        let id = self.handle.id;
        self.handle.shared.with(|s| s.app_drop_writer(id));
    }
}

impl fmt::Debug for ReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadHalf").field("id", &self.id()).finish()
    }
}

impl fmt::Debug for WriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteHalf").field("id", &self.id()).finish()
    }
}
