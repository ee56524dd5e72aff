//! Scenarios 3 and 4: echo round trips, idle and beside a bulk stream.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::Receiver;
use futures_lite::future::FutureExt as _;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use serde_json::json;

use super::{percentile, us, MResult, Outcome, RTT_WARMUP};
use crate::pattern::{data_err, pattern_at};
use crate::peers::{BStream, Session};
use crate::roles::{echo_finish, echo_once, echo_serve, expect_eof, kill_signals, killable, CHUNK};
use crate::runtime::spawn;

/// Scenario 3: sequential 64-byte echo round trips on one stream.
pub(crate) async fn rtt_idle(sess: Arc<Session>, count: usize) -> MResult {
    let server = {
        let sess = sess.clone();
        spawn(async move { echo_serve(sess.server.accept().await?).await })
    };
    let mut s = sess.client.open().await.map_err(|e| format!("open: {e}"))?;
    for k in 0..RTT_WARMUP {
        echo_once(&mut s, k as u64)
            .await
            .map_err(|e| format!("warm-up echo: {e}"))?;
    }
    let mut samples = Vec::with_capacity(count);
    for k in 0..count {
        samples.push(
            echo_once(&mut s, (RTT_WARMUP + k) as u64)
                .await
                .map_err(|e| format!("echo {k}: {e}"))?,
        );
    }
    echo_finish(&mut s)
        .await
        .map_err(|e| format!("closing the echo stream: {e}"))?;
    server.await.map_err(|e| format!("echo server: {e}"))?;
    samples.sort();
    let mut out = Outcome::default();
    out.values
        .insert("p50".into(), us(percentile(&samples, 50.0)));
    out.values
        .insert("p99".into(), us(percentile(&samples, 99.0)));
    out.extra.insert("samples".into(), json!(samples.len()));
    Ok(out)
}

/// Bulk receiver of scenario 4: its length is not known in advance, so the sender hands it over
/// (in process) once it has stopped; the receiver reads exactly that many bytes.
pub(crate) async fn bulk_recv_open_ended(
    s: &mut BStream,
    final_rx: Receiver<u64>,
    progress: &AtomicU64,
) -> io::Result<u64> {
    let idx = 0u32;
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    let mut fin: Option<u64> = None;
    enum Ev {
        Read(io::Result<usize>),
        Final(u64),
    }
    loop {
        if let Some(f) = fin {
            if got == f {
                break;
            }
            if got > f {
                return Err(data_err(format!(
                    "load stream: {got} bytes received, {f} sent"
                )));
            }
        }
        let want = match fin {
            Some(f) => (f - got).min(CHUNK as u64) as usize,
            None => CHUNK,
        };
        let ev = if fin.is_none() {
            let read = async { Ev::Read(s.read(&mut buf[..want]).await) };
            let fin_wait = async { Ev::Final(final_rx.recv().await.unwrap_or(u64::MAX)) };
            read.or(fin_wait).await
        } else {
            Ev::Read(s.read(&mut buf[..want]).await)
        };
        match ev {
            Ev::Final(f) => fin = Some(f),
            Ev::Read(r) => {
                let k = r?;
                if k == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("load stream: EOF after {got} bytes (data lost)"),
                    ));
                }
                if buf[..k] != *pattern_at(idx, got, k) {
                    return Err(data_err(format!(
                        "load stream: wrong bytes within {got}..{}",
                        got + k as u64
                    )));
                }
                got += k as u64;
                progress.store(got, Ordering::Relaxed);
            }
        }
    }
    s.write_all(&[0xAC]).await?;
    s.flush().await?;
    expect_eof(s, "load receiver").await?;
    s.close().await?;
    Ok(got)
}

/// Scenario 4 (and its WAN twin): echo RTT while another stream bulk-sends, after `warmup` of
/// load; also the load's verified rate while the echo is measured.
pub(crate) async fn rtt_loaded(
    sess: Arc<Session>,
    count: usize,
    probe_secs: f64,
    warmup: Duration,
) -> MResult {
    let (final_tx, final_rx) = async_channel::bounded::<u64>(1);
    let kills = kill_signals(1);
    let progress = Arc::new(AtomicU64::new(0));
    let server = {
        let (sess, kills, progress) = (sess.clone(), kills.clone(), progress.clone());
        spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..2 {
                let mut s = sess.server.accept().await?;
                let (final_rx, kills, progress) =
                    (final_rx.clone(), kills.clone(), progress.clone());
                tasks.push(spawn(async move {
                    let mut tag = [0u8; 4];
                    s.read_exact(&mut tag).await?;
                    match tag {
                        [0, 0, 0, 0] => killable(
                            &kills[0],
                            bulk_recv_open_ended(&mut s, final_rx, &progress),
                            "sender",
                        )
                        .await
                        .map(Some),
                        [1, 0, 0, 0] => echo_serve(s).await.map(|_| None),
                        _ => Err(data_err(format!("bad stream tag {tag:?}"))),
                    }
                }));
            }
            let mut bulk_bytes = 0;
            for t in tasks {
                if let Some(n) = t.await? {
                    bulk_bytes = n;
                }
            }
            io::Result::Ok(bulk_bytes)
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (sess, stop, kills) = (sess.clone(), stop.clone(), kills.clone());
        spawn(async move {
            let send = async {
                let mut s = sess.client.open().await?;
                s.write_all(&[0, 0, 0, 0]).await?;
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    s.write_all(pattern_at(0, sent, CHUNK)).await?;
                    sent += CHUNK as u64;
                }
                s.flush().await?;
                let _ = final_tx.send(sent).await;
                let mut ack = [0u8; 1];
                s.read_exact(&mut ack).await?;
                s.close().await?;
                expect_eof(&mut s, "load sender after close").await?;
                io::Result::Ok(sent)
            };
            killable(&kills[0], send, "receiver").await
        })
    };
    let probe = async {
        let mut s = sess.client.open().await?;
        s.write_all(&[1, 0, 0, 0]).await?;
        // Let the load reach a steady state, keeping the probe stream warm meanwhile.
        let warm_until = Instant::now() + warmup;
        let mut k = 0u64;
        while Instant::now() < warm_until {
            echo_once(&mut s, k).await?;
            k += 1;
        }
        let mut samples = Vec::with_capacity(count.min(1 << 16));
        let (t0, loaded0) = (Instant::now(), progress.load(Ordering::Relaxed));
        while samples.len() < count && t0.elapsed().as_secs_f64() < probe_secs {
            samples.push(echo_once(&mut s, k).await?);
            k += 1;
        }
        let load_mbps =
            (progress.load(Ordering::Relaxed) - loaded0) as f64 / t0.elapsed().as_secs_f64() / 1e6;
        echo_finish(&mut s).await?;
        io::Result::Ok((samples, load_mbps))
    };
    let probe_result = probe.await;
    stop.store(true, Ordering::Relaxed);
    let sent = sender.await;
    let received = server.await;
    let mut out = Outcome::default();
    let (mut samples, load_mbps) = match probe_result {
        Ok(s) => s,
        Err(e) => return Err(format!("probe stream: {e}")),
    };
    match (&sent, &received) {
        (Ok(s), Ok(r)) if s == r => {
            out.values.insert("load_mbps".into(), load_mbps);
        }
        _ => {
            out.failed_streams = 1;
            out.errors.push(format!(
                "load stream: sender {sent:?}, receiver {received:?}"
            ));
        }
    }
    if samples.is_empty() {
        return Err("no probe sample completed".into());
    }
    samples.sort();
    out.values
        .insert("p50".into(), us(percentile(&samples, 50.0)));
    out.values
        .insert("p99".into(), us(percentile(&samples, 99.0)));
    out.extra.insert("samples".into(), json!(samples.len()));
    Ok(out)
}
