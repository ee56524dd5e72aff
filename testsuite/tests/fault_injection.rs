//! Fault injection: the transport stalls, moves bytes in random chunks, and then dies (EOF or an
//! error) at a random byte. Every outstanding operation must complete, with an error where the
//! death cut it short, both drivers must resolve, and later operations must fail at once.

mod pipe;

use std::time::Duration;

use futures_lite::future::{self, FutureExt as _};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use pipe::{Cut, Faults};
use smolmux::{Config, Mux, Stream};

const STREAMS: usize = 16;
const BYTES_PER_STREAM: usize = 100_000;

async fn echo(mut stream: Stream) -> std::io::Result<()> {
    let mut buf = vec![0; 8192];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.close().await;
        }
        stream.write_all(&buf[..n]).await?;
    }
}

async fn client(mux: Mux, index: usize) -> std::io::Result<()> {
    let mut stream = mux.open(&[index as u8]).await?;
    let data: Vec<u8> = (0..BYTES_PER_STREAM)
        .map(|i| (i * 13 + index) as u8)
        .collect();
    let (mut reader, mut writer) = futures_lite::io::split(&mut stream);
    let write = async {
        writer.write_all(&data).await?;
        writer.close().await
    };
    let read = async {
        let mut back = Vec::new();
        reader.read_to_end(&mut back).await?;
        // Whatever arrives is an exact prefix of what was sent: a dying connection may cut a
        // stream short, but never corrupts it.
        assert!(
            back.len() <= data.len() && back == data[..back.len()],
            "stream {index} corrupted"
        );
        std::io::Result::Ok(back.len())
    };
    let (written, read) = future::zip(write, read).await;
    written?;
    assert_eq!(
        read?,
        data.len(),
        "stream {index} ended early without an error"
    );
    Ok(())
}

fn error_has_message(result: &std::io::Result<()>) {
    if let Err(err) = result {
        assert!(!err.to_string().is_empty(), "{err:?}");
    }
}

/// Runs the workload over a connection that dies after `cut_at` bytes in one direction.
fn run(seed: u64, cut_at: usize, cut: Cut, a_side: bool) -> usize {
    let healthy = Faults {
        max_chunk: 1 + (seed as usize * 7919) % 40_000,
        pending_percent: (seed % 30) as u8,
        cut_after: None,
    };
    let dying = Faults {
        cut_after: Some((cut_at, cut)),
        ..healthy
    };
    let (a_to_b, b_to_a) = if a_side {
        (dying, healthy)
    } else {
        (healthy, dying)
    };
    let (a_end, b_end) = pipe::duplex(32 << 10, a_to_b, b_to_a, seed);
    let config = Config::default().ping_interval(None);
    let (a_read, a_write) = futures_lite::io::split(a_end);
    let (b_read, b_write) = futures_lite::io::split(b_end);
    let (a, a_driver) = Mux::new(a_read, a_write, config.clone());
    let (b, b_driver) = Mux::new(b_read, b_write, config);

    let ex = smol::LocalExecutor::new();
    let drivers = [ex.spawn(a_driver), ex.spawn(b_driver)];
    let server = {
        let b = b.clone();
        ex.spawn(async move {
            let mut echoes = Vec::new();
            while let Ok(stream) = b.accept().await {
                echoes.push(smol::spawn(echo(stream)));
            }
            for echo in echoes {
                error_has_message(&echo.await);
            }
        })
    };
    let clients: Vec<_> = (0..STREAMS)
        .map(|i| ex.spawn(client(a.clone(), i)))
        .collect();
    let test = async {
        let mut failed = 0;
        for client in clients {
            let result = client.await;
            error_has_message(&result);
            failed += result.is_err() as usize;
        }
        // The connection is dead or the work is done; shut down and check that nothing hangs.
        let _ = a.close().await;
        let _ = b.close().await;
        server.await;
        for driver in drivers {
            error_has_message(&driver.await);
        }
        assert!(!a.is_alive() && !b.is_alive());
        assert!(
            a.open(b"late").await.is_err(),
            "open after the end must fail"
        );
        assert!(b.accept().await.is_err(), "accept after the end must fail");
        failed
    };
    let guard = async {
        smol::Timer::after(Duration::from_secs(60)).await;
        panic!("seed {seed}: hung (cut at {cut_at} {cut:?})");
    };
    future::block_on(ex.run(test.or(guard)))
}

#[test]
fn every_operation_completes_when_the_connection_dies_at_a_random_byte() {
    let total = STREAMS * BYTES_PER_STREAM;
    let mut cut_short = 0;
    for seed in 0..40u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let cut_at = rng.usize(0..total);
        let cut = if rng.bool() { Cut::Eof } else { Cut::Error };
        cut_short += run(seed, cut_at, cut, rng.bool());
    }
    // The cuts land inside the traffic, so most runs must really have broken some stream.
    assert!(
        cut_short > 40,
        "only {cut_short} streams were cut short: the faults did not bite"
    );
}

#[test]
fn the_same_workload_completes_without_a_cut() {
    for seed in 0..5u64 {
        // A cut past the end of all traffic never fires: every stream must complete.
        assert_eq!(run(seed, usize::MAX, Cut::Eof, true), 0, "seed {seed}");
    }
}
