//! The same library under async-std: its TCP types, its executor, its tasks.

mod support;

use std::io::{self, ErrorKind};

use async_std::task;
use smolmux::{Config, Mux};
use support::{
    async_std_pair, echo, eventually, hang_guard, pattern, read_pattern, round_trip, write_pattern,
    AsyncStdPair,
};

/// Accepts streams forever on async-std and echoes each one.
fn spawn_echo_server(mux: Mux) -> task::JoinHandle<()> {
    task::spawn(async move {
        while let Ok(stream) = mux.accept().await {
            task::spawn(echo(stream));
        }
    })
}

#[async_std::test]
async fn echo_on_one_stream() {
    hang_guard(async {
        let pair = async_std_pair(Config::default(), Config::default()).await;
        let _server = spawn_echo_server(pair.b.clone());
        let mut stream = pair.a.open(b"echo").await.unwrap();
        let data = pattern(1, 500_000);
        assert_eq!(round_trip(&mut stream, &data).await.unwrap(), data);
    })
    .await;
}

#[async_std::test]
async fn echo_over_from_io() {
    hang_guard(async {
        let listener = async_std::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let client = async_std::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (a, driver_a) = Mux::from_io(client, Config::default());
        let (b, driver_b) = Mux::from_io(server, Config::default());
        task::spawn(driver_a);
        task::spawn(driver_b);
        let _server = spawn_echo_server(b);
        let mut stream = a.open(b"").await.unwrap();
        let data = pattern(2, 300_000);
        assert_eq!(round_trip(&mut stream, &data).await.unwrap(), data);
    })
    .await;
}

#[async_std::test]
async fn two_hundred_concurrent_streams() {
    const STREAMS: usize = 200;
    hang_guard(async {
        let pair = async_std_pair(Config::default(), Config::default()).await;
        let _server = spawn_echo_server(pair.b.clone());
        let clients: Vec<_> = (0..STREAMS)
            .map(|i| {
                let a = pair.a.clone();
                task::spawn(async move {
                    let data = pattern(500 + i as u64, 1000 + (i * 113) % 30_000);
                    let mut stream = a.open(format!("{i}").as_bytes()).await?;
                    let reply = round_trip(&mut stream, &data).await?;
                    assert!(reply == data, "stream {i} echoed the wrong bytes");
                    io::Result::Ok(())
                })
            })
            .collect();
        for (i, client) in clients.into_iter().enumerate() {
            client
                .await
                .unwrap_or_else(|err| panic!("stream {i} failed: {err}"));
        }
        eventually("every stream left both tables", || {
            pair.a.stats().open_streams == 0 && pair.b.stats().open_streams == 0
        })
        .await;
    })
    .await;
}

#[async_std::test]
async fn mux_close_delivers_queued_bytes_then_eof() {
    const STREAMS: u64 = 10;
    const LEN: u64 = 300_000;
    hang_guard(async {
        let AsyncStdPair {
            a,
            b,
            driver_a,
            driver_b,
        } = async_std_pair(Config::default(), Config::default()).await;
        let readers = task::spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..STREAMS {
                let mut stream = b.accept().await.unwrap();
                let i = u64::from_le_bytes(stream.metadata().try_into().unwrap());
                tasks.push(task::spawn(async move {
                    (i, read_pattern(&mut stream, 200 + i).await)
                }));
            }
            let mut results = Vec::new();
            for t in tasks {
                results.push(t.await);
            }
            results
        });
        let mut streams = Vec::new();
        for i in 0..STREAMS {
            let mut stream = a.open(&i.to_le_bytes()).await.unwrap();
            write_pattern(&mut stream, 200 + i, 0, LEN).await.unwrap();
            streams.push(stream);
        }
        a.close().await.unwrap();
        for (i, result) in readers.await {
            assert_eq!(result.unwrap(), LEN, "stream {i}");
        }
        let err = a.open(b"").await.unwrap_err();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::NotConnected | ErrorKind::ConnectionAborted
            ),
            "{err:?}"
        );
        drop(streams);
        driver_b.await.unwrap();
        driver_a.await.unwrap();
    })
    .await;
}
