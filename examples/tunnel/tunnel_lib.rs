//! The forwarding logic of `examples/tunnel.rs`, kept apart so that `tests/tunnel.rs` can run
//! the same code in-process (it includes this file with `#[path]`).
//!
//! - The **server** accepts mux connections (plain TCP, or TLS); on each, every stream the client
//!   opens names its target `HOST:PORT` in its metadata, and the server connects there and copies
//!   bytes both ways.
//! - The **client** keeps one mux connection to the server, listens on a local address, and
//!   carries each accepted TCP connection as one stream.
//!
//! Half-close goes through in both directions: when one side's read ends, the other side's write
//! direction is closed (`Stream::close` for a stream, `shutdown(Shutdown::Write)` for a socket),
//! so a client that shuts down its write side still gets the whole response. An error in either
//! direction aborts the stream (the peer's end fails with `ConnectionReset` and the reason) and
//! shuts the socket down, so neither direction is left hanging.

use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::AsyncWriteExt;
use futures_rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use futures_rustls::rustls;
use futures_rustls::{TlsAcceptor, TlsConnector};
use smol::net::{TcpListener, TcpStream};
use smolmux::{Config, Driver, Mux, Stream};

/// The name the self-signed certificate is made for, and that the client asks for.
pub const TLS_NAME: &str = "smolmux-tunnel";

/// Runs the tunnel server: accepts mux connections on `listener` until it fails, serving each on
/// its own task. With `tls`, each connection is a TLS server connection first.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> io::Result<()> {
    loop {
        let (tcp, peer) = listener.accept().await?;
        let tls = tls.clone();
        smol::spawn(async move {
            if let Err(e) = serve_connection(tcp, tls).await {
                eprintln!("tunnel server: connection from {peer}: {e}");
            }
        })
        .detach();
    }
}

/// Serves one mux connection until its session ends: each accepted stream is forwarded to the
/// target named in its metadata.
pub async fn serve_connection(
    tcp: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    let (mux, driver) = match tls {
        None => Mux::new(tcp.clone(), tcp, Config::default()),
        Some(config) => Mux::from_io(
            TlsAcceptor::from(config).accept(tcp).await?,
            Config::default(),
        ),
    };
    let driver = smol::spawn(driver);
    // `accept` fails once the session has ended or is closing.
    while let Ok(stream) = mux.accept().await {
        smol::spawn(forward_to_target(stream)).detach();
    }
    driver.await
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
        Err(e) => stream.abort(&format!("cannot connect to {target}: {e}")),
    }
}

/// Connects to a tunnel server and starts the session: returns the handle and the driver (spawn
/// it). With `tls`, the connection is a TLS client connection first.
pub async fn connect(
    server: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> io::Result<(Mux, Driver)> {
    let tcp = TcpStream::connect(server).await?;
    tcp.set_nodelay(true)?;
    Ok(match tls {
        None => Mux::new(tcp.clone(), tcp, Config::default()),
        Some(config) => {
            let name = ServerName::try_from(TLS_NAME).expect("a valid DNS name");
            let tls = TlsConnector::from(config).connect(name, tcp).await?;
            Mux::from_io(tls, Config::default())
        }
    })
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

/// A fresh self-signed certificate for [`TLS_NAME`] and its private key.
pub fn self_signed() -> io::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let certified =
        rcgen::generate_simple_self_signed(vec![TLS_NAME.to_owned()]).map_err(io::Error::other)?;
    let key = PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
    Ok((certified.cert.der().clone(), key.into()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server configuration presenting `cert`.
pub fn server_tls(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> io::Result<Arc<rustls::ServerConfig>> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(io::Error::other)?;
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
