//! The port forwarder of `examples/tunnel.rs`, run in-process over loopback.
//!
//! An HTTP-ish origin server answers `GET /N` with N bytes of a known pattern and then closes;
//! requests reach it through a tunnel client and server, over each kind of tunnel connection
//! (plain TCP, TLS, one WebSocket, a WebSocket over TLS), and every byte is checked. Requests
//! that half-close their connection still get the whole response, and the origin sees that EOF
//! through the tunnel.
//!
//! Also: what each end says when the two disagree about `--tls` or `--ws`, or the server cannot
//! be reached; host names; PEM and DER certificate and key files; and the WebSocket reader.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};

#[path = "../examples/tunnel/tunnel_lib.rs"]
mod tunnel_lib;

/// Hang guard only: each test takes well under a few seconds.
const GUARD: Duration = Duration::from_secs(30);

fn run<T>(test: impl std::future::Future<Output = T>) -> T {
    smol::block_on(futures_lite::future::or(test, async {
        smol::Timer::after(GUARD).await;
        panic!("test hung for {GUARD:?}");
    }))
}

/// The byte at `offset` of an N-byte body: depends on both, so a shifted or mixed-up body fails.
fn body_byte(len: usize, offset: usize) -> u8 {
    (offset.wrapping_mul(131) ^ len.wrapping_mul(7) ^ (offset >> 10)) as u8
}

/// The origin: for each connection, reads a request up to "\r\n\r\n" and answers `GET /N` with
/// N pattern bytes, then closes. `GET /eof/N` first reads on until EOF (which it checks comes
/// with no further bytes), so it answers only once the client's half-close has come through.
async fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    smol::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            smol::spawn(async move {
                if let Err(e) = answer(tcp).await {
                    panic!("origin: {e}");
                }
            })
            .detach();
        }
    })
    .detach();
    addr
}

async fn answer(mut tcp: TcpStream) -> io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0; 512];
    while !request.ends_with(b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await?;
        assert!(n > 0, "origin: EOF inside the request");
        request.extend_from_slice(&buf[..n]);
    }
    let request = String::from_utf8(request).unwrap();
    let path = request
        .strip_prefix("GET /")
        .and_then(|rest| rest.split(' ').next())
        .expect("origin: not a GET request");
    let len: usize = match path.strip_prefix("eof/") {
        Some(len) => {
            let mut rest = Vec::new();
            tcp.read_to_end(&mut rest).await?; // returns only at the client's half-close
            assert!(rest.is_empty(), "origin: bytes after the request");
            len.parse().unwrap()
        }
        None => path.parse().unwrap(),
    };
    tcp.write_all(format!("HTTP/1.0 200 OK\r\nContent-Length: {len}\r\n\r\n").as_bytes())
        .await?;
    let body: Vec<u8> = (0..len).map(|i| body_byte(len, i)).collect();
    for chunk in body.chunks(16 << 10) {
        tcp.write_all(chunk).await?;
    }
    tcp.flush().await?;
    Ok(()) // dropping the socket closes it
}

/// How the tunnel connection is carried: TCP, with TLS and/or one WebSocket on top.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Mode {
    tls: bool,
    ws: bool,
}

const PLAIN: Mode = Mode {
    tls: false,
    ws: false,
};
const TLS: Mode = Mode {
    tls: true,
    ws: false,
};
const WS: Mode = Mode {
    tls: false,
    ws: true,
};
const WSS: Mode = Mode {
    tls: true,
    ws: true,
};

/// Server and client options for `mode`, with a fresh self-signed certificate for TLS.
fn options(mode: Mode) -> (tunnel_lib::ServerOptions, tunnel_lib::ClientOptions) {
    let (server_tls, client_tls) = if mode.tls {
        let (cert, key) = tunnel_lib::self_signed().unwrap();
        (
            Some(tunnel_lib::server_tls(vec![cert.clone()], key).unwrap()),
            Some(tunnel_lib::client_tls(cert).unwrap()),
        )
    } else {
        (None, None)
    };
    (
        tunnel_lib::ServerOptions {
            tls: server_tls,
            ws: mode.ws,
        },
        tunnel_lib::ClientOptions {
            tls: client_tls,
            ws: mode.ws,
        },
    )
}

/// Starts a tunnel server and a tunnel client forwarding to `target`; returns the client's local
/// address.
async fn tunnel(target: SocketAddr, mode: Mode) -> SocketAddr {
    let (server_options, client_options) = options(mode);
    tunnel_with(target, server_options, client_options).await
}

async fn tunnel_with(
    target: SocketAddr,
    server_options: tunnel_lib::ServerOptions,
    client_options: tunnel_lib::ClientOptions,
) -> SocketAddr {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = server.local_addr().unwrap().to_string();
    smol::spawn(tunnel_lib::serve(server, server_options)).detach();

    let (mux, driver) = tunnel_lib::connect(&server_addr, &client_options)
        .await
        .unwrap();
    smol::spawn(driver).detach();
    let local = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local_addr = local.local_addr().unwrap();
    smol::spawn(tunnel_lib::run_client(local, mux, target.to_string())).detach();
    local_addr
}

/// Fetches `GET /{path}` through `addr`; with `half_close`, shuts down the write side after the
/// request. Returns the body after checking the header.
async fn fetch(addr: SocketAddr, path: &str, half_close: bool) -> io::Result<Vec<u8>> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(format!("GET /{path} HTTP/1.0\r\nHost: origin\r\n\r\n").as_bytes())
        .await?;
    if half_close {
        tcp.shutdown(Shutdown::Write)?;
    }
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await?;
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of header in the response")
        + 4;
    let header = String::from_utf8_lossy(&response[..end]).into_owned();
    assert!(
        header.starts_with("HTTP/1.0 200 OK\r\n"),
        "bad header {header:?}"
    );
    Ok(response.split_off(end))
}

fn check_body(len: usize, body: &[u8]) {
    assert_eq!(body.len(), len, "body length for /{len}");
    if let Some(i) = (0..len).find(|&i| body[i] != body_byte(len, i)) {
        panic!("body for /{len} differs at byte {i}");
    }
}

/// 50 sizes from 0 to 1 MiB, all different.
fn sizes() -> Vec<usize> {
    (0..50usize)
        .map(|i| match i {
            0 => 0,
            49 => 1 << 20,
            _ => i * i * 419 + i * 13,
        })
        .collect()
}

async fn concurrent_fetches(local: SocketAddr) {
    let fetches: Vec<_> = sizes()
        .into_iter()
        .map(|len| smol::spawn(async move { (len, fetch(local, &len.to_string(), false).await) }))
        .collect();
    for task in fetches {
        let (len, body) = task.await;
        check_body(len, &body.unwrap_or_else(|e| panic!("fetch /{len}: {e}")));
    }
}

/// The 50 concurrent fetches, then half-closed requests: the origin answers only after it
/// reads EOF, which comes from our shutdown through the tunnel; its close then comes back to us
/// as EOF after the whole body.
async fn fetches_and_half_close(mode: Mode) {
    let local = tunnel(origin().await, mode).await;
    concurrent_fetches(local).await;
    for len in [0, 1, 300_000] {
        let body = fetch(local, &format!("eof/{len}"), true).await.unwrap();
        check_body(len, &body);
    }
    // Half-close on a plain request too: the response still arrives whole.
    let body = fetch(local, "123456", true).await.unwrap();
    check_body(123_456, &body);
}

#[test]
fn fifty_concurrent_fetches_and_half_close() {
    run(fetches_and_half_close(PLAIN))
}

#[test]
fn fifty_concurrent_fetches_and_half_close_over_tls() {
    run(fetches_and_half_close(TLS))
}

#[test]
fn fifty_concurrent_fetches_and_half_close_over_websocket() {
    run(fetches_and_half_close(WS))
}

#[test]
fn fifty_concurrent_fetches_and_half_close_over_websocket_and_tls() {
    run(fetches_and_half_close(WSS))
}

#[test]
fn tls_client_rejects_another_certificate() {
    run(async {
        for ws in [false, true] {
            let (server_options, _) = options(Mode { tls: true, ws });
            let (other_cert, _) = tunnel_lib::self_signed().unwrap();
            let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let server_addr = server.local_addr().unwrap().to_string();
            smol::spawn(tunnel_lib::serve(server, server_options)).detach();
            let client_options = tunnel_lib::ClientOptions {
                tls: Some(tunnel_lib::client_tls(other_cert).unwrap()),
                ws,
            };
            let err = match tunnel_lib::connect(&server_addr, &client_options).await {
                Ok(_) => panic!("the handshake should fail"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains("certificate"), "unexpected error: {err}");
            assert!(err.contains(&server_addr), "names no server: {err}");
            // A certificate mismatch is not a --tls mismatch: no hint about it.
            assert!(!err.contains("--tls"), "misleading hint: {err}");
        }
    })
}

#[test]
fn unreachable_target_closes_the_connection() {
    run(async {
        // A port with nothing listening: bind, note the address, and close.
        let dead = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let local = tunnel(dead, PLAIN).await;
        let mut tcp = TcpStream::connect(local).await.unwrap();
        let mut got = Vec::new();
        // The server aborts the stream; the client's forwarder then shuts the socket down.
        let _ = tcp.read_to_end(&mut got).await;
        assert!(got.is_empty());
    })
}

#[test]
fn connect_failure_names_the_server() {
    run(async {
        let dead = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let err = match tunnel_lib::connect(&dead, &Default::default()).await {
            Ok(_) => panic!("nothing listens at {dead}"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        assert!(
            err.to_string()
                .starts_with(&format!("connecting to {dead}: ")),
            "{err}"
        );
    })
}

#[test]
fn host_names_are_resolved() {
    run(async {
        let local = tunnel_by_name(origin().await).await;
        let body = fetch(local, "eof/5000", true).await.unwrap();
        check_body(5000, &body);
    })
}

/// A plain tunnel whose client names the server `localhost:PORT` and the target
/// `localhost:PORT`.
async fn tunnel_by_name(target: SocketAddr) -> SocketAddr {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_port = server.local_addr().unwrap().port();
    smol::spawn(tunnel_lib::serve(server, Default::default())).detach();
    let (mux, driver) =
        tunnel_lib::connect(&format!("localhost:{server_port}"), &Default::default())
            .await
            .unwrap();
    smol::spawn(driver).detach();
    let local = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local_addr = local.local_addr().unwrap();
    let target = format!("localhost:{}", target.port());
    smol::spawn(tunnel_lib::run_client(local, mux, target)).detach();
    local_addr
}

/// What each end reports when the two disagree about `--tls` or `--ws`: one connection, the
/// server's handshake or session error and the client's (from `connect`, or else from the end
/// of its session).
async fn mismatch(server_mode: Mode, client_mode: Mode) -> (String, String) {
    // Both ends with the same certificate, wherever they use TLS.
    let (cert, key) = tunnel_lib::self_signed().unwrap();
    let server_options = tunnel_lib::ServerOptions {
        tls: server_mode
            .tls
            .then(|| tunnel_lib::server_tls(vec![cert.clone()], key).unwrap()),
        ws: server_mode.ws,
    };
    let client_options = tunnel_lib::ClientOptions {
        tls: client_mode
            .tls
            .then(|| tunnel_lib::client_tls(cert).unwrap()),
        ws: client_mode.ws,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = smol::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        match tunnel_lib::serve_connection(tcp, &server_options).await {
            Ok(()) => panic!("server {server_mode:?} served client {client_mode:?}"),
            Err(e) => e.to_string(),
        }
    });
    let client = match tunnel_lib::connect(&addr, &client_options).await {
        Err(e) => e.to_string(),
        Ok((mux, driver)) => tunnel_lib::session_end(&addr, &mux, driver.await).to_string(),
    };
    (server.await, client)
}

#[test]
fn mismatched_tls_or_websocket_is_named_on_both_sides() {
    run(async {
        // Whichever end fails, and wherever: a TLS or WebSocket handshake, or the mux's header
        // check (the library names TLS and HTTP bytes), or a session ended before its first PONG.
        let names_tls = |m: &str| m.contains("TLS") || m.contains("--tls");
        let names_ws =
            |m: &str| m.contains("WebSocket") || m.contains("HTTP") || m.contains("--ws");
        for server_mode in [PLAIN, TLS, WS, WSS] {
            for client_mode in [PLAIN, TLS, WS, WSS] {
                if server_mode == client_mode {
                    continue;
                }
                let (server, client) = mismatch(server_mode, client_mode).await;
                let case =
                    format!("server {server_mode:?}: {server}\nclient {client_mode:?}: {client}");
                if server_mode.tls != client_mode.tls {
                    assert!(names_tls(&server) && names_tls(&client), "{case}");
                } else {
                    assert!(names_ws(&server) && names_ws(&client), "{case}");
                }
                // The side with the flag the other lacks, or the client, suggests a flag.
                assert!(
                    client.contains("--tls") || client.contains("--ws"),
                    "no hint for the client: {case}"
                );
            }
        }
    })
}

#[test]
fn the_never_answered_hint_is_only_for_sessions_that_never_started() {
    run(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (go, closing) = async_channel::bounded::<()>(1);
        let server = smol::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let (mux, driver) = tunnel_lib::accept_session(tcp, &Default::default())
                .await
                .unwrap();
            let driver = smol::spawn(driver);
            closing.recv().await.unwrap();
            mux.close().await.unwrap();
            driver.await
        });
        let (mux, driver) = tunnel_lib::connect(&addr, &Default::default())
            .await
            .unwrap();
        let driver = smol::spawn(driver);
        // The PING of the session's start has come back: the server speaks the mux protocol.
        while mux.last_rtt().is_none() {
            smol::Timer::after(Duration::from_millis(1)).await;
        }
        go.send(()).await.unwrap();
        let end = tunnel_lib::session_end(&addr, &mux, driver.await).to_string();
        server.await.unwrap();
        assert_eq!(end, format!("the server {addr} closed the tunnel"));
    })
}

#[test]
fn pem_and_der_certificate_and_key_files() {
    run(async {
        let certified = rcgen::generate_simple_self_signed(vec!["tunnel.test".into()]).unwrap();
        let (cert_pem, key_pem) = (certified.cert.pem(), certified.key_pair.serialize_pem());
        let (cert_der, key_der) = (
            certified.cert.der().to_vec(),
            certified.key_pair.serialize_der(),
        );
        let certs = tunnel_lib::parse_certs(cert_pem.as_bytes()).unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].as_ref(), &cert_der[..]);
        assert_eq!(tunnel_lib::parse_certs(&cert_der).unwrap(), certs);
        let key = tunnel_lib::parse_key(key_pem.as_bytes()).unwrap();
        assert_eq!(key.secret_der(), &key_der[..]);
        assert_eq!(
            tunnel_lib::parse_key(&key_der).unwrap().secret_der(),
            &key_der[..]
        );
        // Mixed up or empty files say what is missing.
        let err = tunnel_lib::parse_key(cert_pem.as_bytes()).unwrap_err();
        assert!(err.contains("no PRIVATE KEY"), "{err}");
        let err = tunnel_lib::parse_certs(key_pem.as_bytes()).unwrap_err();
        assert!(err.contains("no CERTIFICATE"), "{err}");
        assert!(tunnel_lib::parse_certs(b"").is_err());
        assert!(tunnel_lib::parse_key(b"not a key").is_err());

        // The server presents the certificate read from PEM; the client pins the DER one.
        let server_options = tunnel_lib::ServerOptions {
            tls: Some(tunnel_lib::server_tls(certs, key).unwrap()),
            ws: true,
        };
        let client_options = tunnel_lib::ClientOptions {
            tls: Some(tunnel_lib::client_tls(cert_der.into()).unwrap()),
            ws: true,
        };
        let local = tunnel_with(origin().await, server_options, client_options).await;
        let body = fetch(local, "eof/70000", true).await.unwrap();
        check_body(70_000, &body);
    })
}

/// `WsReader` gives the binary messages' bytes in order, skipping Ping, Pong and empty
/// messages, and ends at Close; a Text message is an error.
#[test]
fn websocket_reader_takes_only_binary_messages() {
    use async_tungstenite::tungstenite::Message;
    use futures_lite::StreamExt;

    run(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = smol::spawn(async move {
            for messages in [
                vec![
                    Message::Ping(b"ping".to_vec().into()),
                    Message::binary(b"abc".to_vec()),
                    Message::binary(Vec::new()),
                    Message::Pong(b"pong".to_vec().into()),
                    Message::binary(b"defgh".to_vec()),
                    Message::Close(None),
                ],
                vec![Message::binary(b"xy".to_vec()), Message::text("hello")],
            ] {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut ws = async_tungstenite::accept_async(tcp).await.unwrap();
                for message in messages {
                    ws.send(message).await.unwrap();
                }
                // Read until the client goes, so that nothing is cut short.
                while let Some(Ok(_)) = ws.next().await {}
            }
        });
        let connect = || async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let (ws, _) = async_tungstenite::client_async(format!("ws://{addr}/"), tcp)
                .await
                .unwrap();
            let (sender, receiver) = ws.split();
            (sender, tunnel_lib::WsReader::new(receiver)) // the sender keeps the connection open
        };
        let (ws_sender, mut reader) = connect().await;
        let (got, end) = read_until_end(&mut reader).await;
        assert_eq!(got, b"abcdefgh");
        assert!(end.is_ok(), "{end:?}");
        drop((ws_sender, reader));

        let (ws_sender, mut reader) = connect().await;
        let (got, end) = read_until_end(&mut reader).await;
        assert_eq!(got, b"xy");
        let err = end.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("text message"), "{err}");
        drop((ws_sender, reader));
        server.await;
    })
}

/// Reads in 2-byte reads (smaller than a message: the rest waits for the next read) until EOF
/// or an error; returns the bytes and how it ended.
async fn read_until_end(reader: &mut (impl AsyncRead + Unpin)) -> (Vec<u8>, io::Result<()>) {
    let mut got = Vec::new();
    let mut buf = [0; 2];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Err(e)),
        }
    }
}
