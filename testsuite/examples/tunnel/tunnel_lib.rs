//! The forwarding logic of `examples/tunnel.rs`, kept apart so that `tests/tunnel.rs` can run
//! the same code in-process (it includes this file with `#[path]`).
//!
//! - The **server** accepts mux connections; on each, every stream the client opens names its
//!   target `HOST:PORT` in its metadata, and the server connects there and copies bytes both
//!   ways.
//! - The **client** keeps one mux connection to the server, listens on a local address, and
//!   carries each accepted TCP connection as one stream.
//!
//! The mux connection is TCP, optionally wrapped in TLS (futures-rustls) and, inside that, in
//! one WebSocket connection (async-tungstenite: `ws://`, or `wss://` with TLS), so that the
//! tunnel can pass through HTTP infrastructure (reverse proxies, load balancers) that forwards
//! WebSocket upgrades. Over WebSocket, each write of the mux driver is one binary message.
//!
//! Half-close goes through in both directions: when one side's read ends, the other side's write
//! direction is closed (`Stream::close` for a stream, `shutdown(Shutdown::Write)` for a socket),
//! so a client that shuts down its write side still gets the whole response. An error in either
//! direction aborts the stream (the peer's end fails with `ConnectionReset` and the reason) and
//! shuts the socket down, so neither direction is left hanging.
//!
//! Errors name what failed (`connecting to 127.0.0.1:7100: Connection refused`), and where the
//! two ends disagree about `--tls` or `--ws` they say so.

use std::fmt::Display;
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use async_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use async_tungstenite::{ByteWriter, WebSocketStream};
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::AsyncWriteExt;
use futures_rustls::pki_types::pem::PemObject;
use futures_rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use futures_rustls::rustls;
use futures_rustls::{TlsAcceptor, TlsConnector};
use smol::net::{TcpListener, TcpStream};
use smolmux::{Config, Driver, Mux, Stream};

/// The name the self-signed certificate is made for, and the TLS server name the client asks
/// for when `--server` names an IP address rather than a host.
pub const TLS_NAME: &str = "smolmux-tunnel";

/// How the server takes its mux connections: over TLS with `tls`, over one WebSocket each with
/// `ws` (inside the TLS, if both).
#[derive(Clone, Default)]
pub struct ServerOptions {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub ws: bool,
}

/// How the client makes its mux connection; must match the server's [`ServerOptions`].
#[derive(Clone, Default)]
pub struct ClientOptions {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub ws: bool,
}

/// Prefixes an error with what was being done, keeping its kind:
/// `connecting to 127.0.0.1:7100: Connection refused (os error 111)`.
pub trait ErrorContext<T> {
    fn context<D: Display>(self, what: impl FnOnce() -> D) -> io::Result<T>;
}

impl<T> ErrorContext<T> for io::Result<T> {
    fn context<D: Display>(self, what: impl FnOnce() -> D) -> io::Result<T> {
        self.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", what())))
    }
}

/// Runs the tunnel server: accepts mux connections on `listener` until it fails, serving each on
/// its own task.
pub async fn serve(listener: TcpListener, options: ServerOptions) -> io::Result<()> {
    loop {
        let (tcp, peer) = listener.accept().await?;
        let options = options.clone();
        smol::spawn(async move {
            if let Err(e) = serve_connection(tcp, &options).await {
                eprintln!("tunnel server: connection from {peer}: {e}");
            }
        })
        .detach();
    }
}

/// Serves one mux connection until its session ends: each accepted stream is forwarded to the
/// target named in its metadata.
pub async fn serve_connection(tcp: TcpStream, options: &ServerOptions) -> io::Result<()> {
    let (mux, driver) = accept_session(tcp, options).await?;
    let driver = smol::spawn(driver);
    // `accept` fails once the session has ended or is closing.
    while let Ok(stream) = mux.accept().await {
        smol::spawn(forward_to_target(stream)).detach();
    }
    driver.await
}

/// The server's side of the handshakes (TLS, then WebSocket, as configured) on an accepted
/// connection, and the session over it.
pub async fn accept_session(tcp: TcpStream, options: &ServerOptions) -> io::Result<(Mux, Driver)> {
    tcp.set_nodelay(true)?;
    Ok(match (&options.tls, options.ws) {
        (None, false) => Mux::new(tcp.clone(), tcp, Config::default()),
        (None, true) => ws_session(ws_accept(tcp, false).await?),
        (Some(tls), false) => Mux::from_io(tls_accept(tls, tcp).await?, Config::default()),
        (Some(tls), true) => ws_session(ws_accept(tls_accept(tls, tcp).await?, true).await?),
    })
}

async fn tls_accept(
    config: &Arc<rustls::ServerConfig>,
    tcp: TcpStream,
) -> io::Result<futures_rustls::server::TlsStream<TcpStream>> {
    TlsAcceptor::from(config.clone())
        .accept(tcp)
        .await
        .map_err(|e| {
            let hint = if not_tls(&e) {
                "; the client does not speak TLS: is it run without --tls?"
            } else {
                ""
            };
            io::Error::new(e.kind(), format!("TLS handshake failed: {e}{hint}"))
        })
}

/// `over_tls`: whether a TLS handshake came first (so the client speaks TLS).
async fn ws_accept<S>(io: S, over_tls: bool) -> io::Result<WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async_tungstenite::accept_async(io).await.map_err(|e| {
        let hint = if over_tls {
            "is it run without --ws?"
        } else {
            "is it run without --ws, or with --tls?"
        };
        let e = ws_to_io(e);
        io::Error::new(
            e.kind(),
            format!("WebSocket handshake failed: {e}; the client did not open a WebSocket: {hint}"),
        )
    })
}

/// Connects to the stream's target and copies both ways; a target that cannot be reached aborts
/// the stream with the reason.
async fn forward_to_target(stream: Stream) {
    let target = match std::str::from_utf8(stream.metadata()) {
        Ok(target) => target.to_owned(),
        Err(_) => return stream.abort("target is not UTF-8"),
    };
    match TcpStream::connect(target.as_str()).await {
        Ok(tcp) => {
            let _ = tcp.set_nodelay(true);
            if let Err(e) = forward(tcp, stream).await {
                eprintln!("tunnel server: to {target}: {e}");
            }
        }
        Err(e) => stream.abort(&format!("connecting to {target}: {e}")),
    }
}

/// Connects to a tunnel server (`HOST:PORT`; host names are resolved) and starts the session:
/// returns the handle and the driver (spawn it).
pub async fn connect(server: &str, options: &ClientOptions) -> io::Result<(Mux, Driver)> {
    let tcp = TcpStream::connect(server)
        .await
        .context(|| format!("connecting to {server}"))?;
    tcp.set_nodelay(true)?;
    Ok(match (&options.tls, options.ws) {
        (None, false) => Mux::new(tcp.clone(), tcp, Config::default()),
        (None, true) => ws_session(ws_connect(server, "ws", tcp).await?),
        (Some(tls), false) => Mux::from_io(tls_connect(tls, server, tcp).await?, Config::default()),
        (Some(tls), true) => {
            let tls = tls_connect(tls, server, tcp).await?;
            ws_session(ws_connect(server, "wss", tls).await?)
        }
    })
}

async fn tls_connect(
    config: &Arc<rustls::ClientConfig>,
    server: &str,
    tcp: TcpStream,
) -> io::Result<futures_rustls::client::TlsStream<TcpStream>> {
    TlsConnector::from(config.clone())
        .connect(tls_server_name(server), tcp)
        .await
        .map_err(|e| {
            let hint = if not_tls(&e) {
                "; the server does not speak TLS: is it run without --tls?"
            } else {
                ""
            };
            io::Error::new(
                e.kind(),
                format!("TLS handshake with {server} failed: {e}{hint}"),
            )
        })
}

async fn ws_connect<S>(server: &str, scheme: &str, io: S) -> io::Result<WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let url = format!("{scheme}://{server}/");
    match async_tungstenite::client_async(url.as_str(), io).await {
        Ok((ws, _response)) => Ok(ws),
        Err(e) => {
            // Over TLS, the TLS handshake has shown that the server speaks TLS; without, a TLS
            // server's alert fails the HTTP parsing the same way a plain server's frames do.
            let hint = if scheme == "wss" {
                "is the server run without --ws?"
            } else {
                "is the server run without --ws, or with --tls?"
            };
            let e = ws_to_io(e);
            Err(io::Error::new(
                e.kind(),
                format!("WebSocket handshake with {url} failed: {e}; {hint}"),
            ))
        }
    }
}

/// The name the TLS client asks for: the host of `server` (`HOST:PORT`), or [`TLS_NAME`]. The
/// client pins the server's certificate, so the name is not checked; it is sent as SNI, which
/// TLS-terminating proxies route by.
fn tls_server_name(server: &str) -> ServerName<'static> {
    let host = server.rsplit_once(':').map_or(server, |(host, _port)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .or_else(|_| ServerName::try_from(TLS_NAME))
        .expect("a valid DNS name")
}

/// Whether a TLS handshake failed because the other end sent something that is not TLS at all
/// (a mux frame, an HTTP request) or closed the connection at once, as a peer does that expects
/// no TLS, rather than for a TLS reason (a certificate, an alert).
fn not_tls(e: &io::Error) -> bool {
    let message = e.to_string();
    e.kind() == io::ErrorKind::UnexpectedEof
        || message.contains("corrupt message")
        || message.contains("InvalidContentType")
}

/// Why the client's session with `server` ended, from the driver's result, for the user.
///
/// A session whose first PING was never answered (`Mux::last_rtt` is still `None`) ended before
/// the server ever spoke the mux protocol: that is how a server with another `--tls`/`--ws`
/// setting, or something that is no tunnel server, looks to a plain client.
pub fn session_end(server: &str, mux: &Mux, result: io::Result<()>) -> io::Error {
    let never_answered = mux.last_rtt().is_none();
    let hint = if never_answered {
        " before answering (is it a tunnel server, and are --tls and --ws the same on both sides?)"
    } else {
        ""
    };
    match result {
        Ok(()) => io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("the server {server} closed the tunnel{hint}"),
        ),
        Err(e) => io::Error::new(e.kind(), format!("the tunnel to {server} ended{hint}: {e}")),
    }
}

/// Runs the tunnel client: every connection accepted on `listener` becomes one stream of `mux`
/// whose metadata is `target`. Returns when the listener or the session fails.
pub async fn run_client(listener: TcpListener, mux: Mux, target: String) -> io::Result<()> {
    loop {
        let (tcp, peer) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        // `open` fails once the session has ended: there is nothing left to forward over.
        let stream = mux.open(target.as_bytes()).await?;
        smol::spawn(async move {
            if let Err(e) = forward(tcp, stream).await {
                eprintln!("tunnel client: from {peer}: {e}");
            }
        })
        .detach();
    }
}

/// Copies bytes both ways between a socket and a stream until both directions have ended.
///
/// When a direction reaches EOF, the write side it was feeding is closed (half-close), and the
/// other direction goes on. When a direction fails, the stream is aborted and the socket shut
/// down, which ends the other direction too; the first error is returned.
pub async fn forward(tcp: TcpStream, stream: Stream) -> io::Result<()> {
    let stream = Arc::new(Mutex::new(stream));
    let abort = |e: &io::Error| {
        stream.lock().unwrap().abort(&format!("tunnel: {e}"));
        let _ = tcp.shutdown(Shutdown::Both);
    };
    // Socket to stream: at the socket's EOF, half-close the stream.
    let up = async {
        let mut writer = SharedStream(stream.clone());
        let result = async {
            futures_lite::io::copy(tcp.clone(), &mut writer).await?;
            writer.close().await
        }
        .await;
        if let Err(e) = &result {
            abort(e);
        }
        result
    };
    // Stream to socket: at the stream's EOF, shut down the socket's write direction.
    let down = async {
        let mut tcp_writer = tcp.clone();
        let result = async {
            futures_lite::io::copy(SharedStream(stream.clone()), &mut tcp_writer).await?;
            tcp_writer.flush().await?;
            match tcp.shutdown(Shutdown::Write) {
                // The far end has closed the socket already: nothing more to tell it.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
                result => result,
            }
        }
        .await;
        if let Err(e) = &result {
            abort(e);
        }
        result
    };
    let (up, down) = futures_lite::future::zip(up, down).await;
    up.and(down)
}

/// One stream used by both directions of [`forward`] (which poll it from the same task, so the
/// lock is never contended), while [`forward`] keeps a handle to abort it.
struct SharedStream(Arc<Mutex<Stream>>);

impl AsyncRead for SharedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.lock().unwrap()).poll_read(cx, buf)
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.lock().unwrap()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.lock().unwrap()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.lock().unwrap()).poll_close(cx)
    }
}

/// A session over one WebSocket connection: the driver reads the binary messages' bytes
/// ([`WsReader`]) and writes each batch of frames as one binary message (async-tungstenite's
/// `ByteWriter`; closing it sends the WebSocket Close).
fn ws_session<S>(ws: WebSocketStream<S>) -> (Mux, Driver)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, receiver) = ws.split();
    Mux::new(
        WsReader::new(receiver),
        ByteWriter::new(sender),
        Config::default(),
    )
}

/// The bytes of a WebSocket's binary messages, as one byte stream.
///
/// Unlike async-tungstenite's `ByteReader`, which hands on every message's payload, this skips
/// Ping and Pong messages (tungstenite answers Pings by itself; a proxy may send them at any
/// time) and empty messages (which would read as EOF), ends at the peer's Close, and fails on a
/// Text message, which no tunnel end sends.
pub struct WsReader<R> {
    messages: R,
    /// The unread rest of the current binary message.
    pending: Bytes,
}

impl<R> WsReader<R> {
    pub fn new(messages: R) -> Self {
        WsReader {
            messages,
            pending: Bytes::new(),
        }
    }
}

impl<R> AsyncRead for WsReader<R>
where
    R: futures_lite::Stream<Item = Result<Message, WsError>> + Unpin,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        while self.pending.is_empty() {
            match ready!(Pin::new(&mut self.messages).poll_next(cx)) {
                // The Close message, or the end after it.
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(0)),
                Some(Ok(Message::Binary(bytes))) => self.pending = bytes,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text message on the tunnel's WebSocket (expected binary)",
                    )))
                }
                Some(Err(e)) => return Poll::Ready(Err(ws_to_io(e))),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Poll::Ready(Ok(n))
    }
}

/// A WebSocket error as an I/O error: the I/O error itself, or the WebSocket's message.
fn ws_to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        e => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    }
}

/// A fresh self-signed certificate for [`TLS_NAME`] and its private key.
pub fn self_signed() -> io::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let certified =
        rcgen::generate_simple_self_signed(vec![TLS_NAME.to_owned()]).map_err(io::Error::other)?;
    let key = PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
    Ok((certified.cert.der().clone(), key.into()))
}

/// Whether a file's contents are PEM (text with `-----BEGIN` sections) rather than DER.
fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(10).any(|w| w == b"-----BEGIN")
}

/// The certificates in a certificate file: every `CERTIFICATE` section of a PEM file (the
/// server's own certificate first, then its chain), or a single DER certificate.
pub fn parse_certs(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    if !is_pem(bytes) {
        return Ok(vec![CertificateDer::from(bytes.to_vec())]);
    }
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE section in this PEM file".into());
    }
    Ok(certs)
}

/// The private key in a key file: the first private key section of a PEM file (PKCS#8, PKCS#1
/// or SEC1), or a DER key.
pub fn parse_key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    if is_pem(bytes) {
        PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
            futures_rustls::pki_types::pem::Error::NoItemsFound => {
                "no PRIVATE KEY section in this PEM file".into()
            }
            e => format!("bad PEM: {e}"),
        })
    } else {
        PrivateKeyDer::try_from(bytes.to_vec()).map_err(|e| format!("not a DER private key: {e}"))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server configuration presenting `certs` (the server's certificate first).
pub fn server_tls(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> io::Result<Arc<rustls::ServerConfig>> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    Ok(Arc::new(config))
}

/// A TLS client configuration that trusts exactly one certificate: the server's, byte for byte
/// (no CA, no name check; the handshake signatures are still verified against its key).
pub fn client_tls(cert: CertificateDer<'static>) -> io::Result<Arc<rustls::ClientConfig>> {
    let provider = provider();
    let verifier = Arc::new(PinnedCert {
        cert,
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .dangerous() // a custom verifier: it pins one certificate instead of trusting CAs
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts the server only if it presents exactly the pinned certificate.
#[derive(Debug)]
struct PinnedCert {
    cert: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: futures_rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
