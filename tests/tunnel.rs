//! The port forwarder of `examples/tunnel.rs`, run in-process over loopback.
//!
//! An HTTP-ish origin server answers `GET /N` with N bytes of a known pattern and then closes;
//! requests reach it through a tunnel client and server (plain TCP, and TLS), and every byte is
//! checked. One request half-closes its connection and still gets the whole response, and the
//! origin sees that EOF through the tunnel.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
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

/// Starts a tunnel server and a tunnel client forwarding to `target`; returns the client's local
/// address.
async fn tunnel(target: SocketAddr, tls: bool) -> SocketAddr {
    let (server_tls, client_tls) = if tls {
        let (cert, key) = tunnel_lib::self_signed().unwrap();
        (
            Some(tunnel_lib::server_tls(cert.clone(), key).unwrap()),
            Some(tunnel_lib::client_tls(cert).unwrap()),
        )
    } else {
        (None, None)
    };
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = server.local_addr().unwrap().to_string();
    smol::spawn(tunnel_lib::serve(server, server_tls)).detach();

    let (mux, driver) = tunnel_lib::connect(&server_addr, client_tls).await.unwrap();
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

#[test]
fn fifty_concurrent_fetches() {
    run(async {
        let local = tunnel(origin().await, false).await;
        concurrent_fetches(local).await;
    })
}

#[test]
fn half_close_goes_through_both_ways() {
    run(async {
        let local = tunnel(origin().await, false).await;
        // The origin answers only after it reads EOF, which comes from our shutdown through
        // the tunnel; its close then comes back to us as EOF after the whole body.
        for len in [0, 1, 300_000] {
            let body = fetch(local, &format!("eof/{len}"), true).await.unwrap();
            check_body(len, &body);
        }
        // Half-close on a plain request too: the response still arrives whole.
        let body = fetch(local, "123456", true).await.unwrap();
        check_body(123_456, &body);
    })
}

#[test]
fn fifty_concurrent_fetches_over_tls() {
    run(async {
        let local = tunnel(origin().await, true).await;
        concurrent_fetches(local).await;
        let body = fetch(local, "eof/200000", true).await.unwrap();
        check_body(200_000, &body);
    })
}

#[test]
fn tls_client_rejects_another_certificate() {
    run(async {
        let (cert, key) = tunnel_lib::self_signed().unwrap();
        let (other_cert, _) = tunnel_lib::self_signed().unwrap();
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap().to_string();
        smol::spawn(tunnel_lib::serve(
            server,
            Some(tunnel_lib::server_tls(cert, key).unwrap()),
        ))
        .detach();
        let client_tls = tunnel_lib::client_tls(other_cert).unwrap();
        let err = match tunnel_lib::connect(&server_addr, Some(client_tls)).await {
            Ok(_) => panic!("the handshake should fail"),
            Err(e) => e,
        };
        assert!(
            err.to_string().contains("certificate"),
            "unexpected error: {err}"
        );
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
        let local = tunnel(dead, false).await;
        let mut tcp = TcpStream::connect(local).await.unwrap();
        let mut got = Vec::new();
        // The server aborts the stream; the client's forwarder then shuts the socket down.
        let _ = tcp.read_to_end(&mut got).await;
        assert!(got.is_empty());
    })
}
