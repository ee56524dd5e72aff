//! smolmux on a tokio runtime, through `tokio-util`'s compat layer.
//!
//! Both ends run on a multi-threaded tokio runtime over loopback TCP, each connection split with
//! `into_split` and each half wrapped with `.compat()` / `.compat_write()`; drivers and stream
//! tasks are spawned with `tokio::spawn`. Several streams echo at once (every byte checked), and
//! then both sessions close cleanly.

use std::io;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smolmux::{Config, Driver, Mux};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

/// Hang guard only: every step here takes milliseconds.
const GUARD: Duration = Duration::from_secs(20);

const STREAMS: usize = 16;

fn mux_over(tcp: TcpStream) -> (Mux, Driver) {
    tcp.set_nodelay(true).unwrap();
    let (read, write) = tcp.into_split();
    Mux::new(read.compat(), write.compat_write(), Config::default())
}

/// A deterministic pattern that differs per stream and per offset.
fn pattern(stream: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 * 31 + stream as u64 * 7 + (i >> 8) as u64) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_on_many_streams_then_close() {
    tokio::time::timeout(GUARD, run()).await.expect("test hung");
}

async fn run() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();

    // Server: echo every stream back, half-closing after the echo.
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let (mux, driver) = mux_over(tcp);
        let driver = tokio::spawn(driver);
        let mut echoes = Vec::new();
        // `accept` fails once the client has closed the session.
        while let Ok(stream) = mux.accept().await {
            echoes.push(tokio::spawn(async move {
                let metadata = stream.metadata().to_vec();
                let (reader, mut writer) = futures_lite::io::split(stream);
                let n = futures_lite::io::copy(reader, &mut writer).await?;
                writer.close().await?;
                io::Result::Ok((metadata, n))
            }));
        }
        let mut echoed = Vec::new();
        for echo in echoes {
            echoed.push(echo.await.unwrap()?);
        }
        // The client closed its end; close ours so that its driver ends too.
        let _ = mux.close().await;
        driver.await.unwrap()?;
        io::Result::Ok(echoed)
    });

    // Client: one connection, STREAMS streams at once, sizes from 0 to ~1.5 MB so that some
    // streams need many frames and several window grants, and they interleave.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mux, driver) = mux_over(tcp);
    let driver = tokio::spawn(driver);
    let sizes: Vec<usize> = (0..STREAMS).map(|i| i * i * 6_151).collect();
    let clients: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let mux = mux.clone();
            tokio::spawn(async move {
                let stream = mux.open(format!("stream {i}").as_bytes()).await?;
                let data = pattern(i, len);
                let (mut reader, mut writer) = futures_lite::io::split(stream);
                // Write and read at once: a stream's echo can exceed every buffer on the way.
                let sent = data.clone();
                let writing = tokio::spawn(async move {
                    for chunk in sent.chunks(10_000) {
                        writer.write_all(chunk).await?;
                    }
                    writer.close().await // half-close: the echo still comes back
                });
                let mut got = Vec::with_capacity(len);
                reader.read_to_end(&mut got).await?;
                writing.await.unwrap()?;
                assert_eq!(got.len(), len, "stream {i}: echo length");
                assert!(got == data, "stream {i}: echo differs from what was sent");
                io::Result::Ok(())
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap().unwrap();
    }

    mux.close().await.unwrap();
    driver.await.unwrap().unwrap();
    assert!(!mux.is_alive());

    let mut echoed = server.await.unwrap().unwrap();
    echoed.sort();
    let mut expected: Vec<(Vec<u8>, u64)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| (format!("stream {i}").into_bytes(), len as u64))
        .collect();
    expected.sort();
    assert_eq!(echoed, expected);
}

/// The session's ping timers (from async-io) fire under tokio: a short ping interval gives an
/// RTT measurement while the runtime is tokio's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_measure_rtt_under_tokio() {
    tokio::time::timeout(GUARD, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Config::default().ping_interval(Some(Duration::from_millis(50)));
        let client_config = config.clone();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let (read, write) = tcp.into_split();
            let (mux, driver) = Mux::new(read.compat(), write.compat_write(), config);
            let driver = tokio::spawn(driver);
            while mux.accept().await.is_ok() {}
            let _ = mux.close().await;
            driver.await.unwrap()
        });
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        let (mux, driver) = Mux::new(read.compat(), write.compat_write(), client_config);
        let driver = tokio::spawn(driver);
        while mux.last_rtt().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Past a few ping intervals the session is still alive (PONGs keep coming).
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(mux.is_alive());
        mux.close().await.unwrap();
        driver.await.unwrap().unwrap();
        server.await.unwrap().unwrap();
    })
    .await
    .expect("test hung");
}
