//! Stream roles: what each end of a bulk or echo stream does (the protocols in main.rs's
//! docs), verifying every byte.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use futures_lite::future::FutureExt as _;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use crate::pattern::{data_err, pattern_at};
use crate::peers::BStream;

/// The size of every bulk write and read.
pub(crate) const CHUNK: usize = 64 << 10;
/// The size of an echo message.
pub(crate) const MSG: usize = 64;

pub(crate) async fn expect_eof(s: &mut BStream, what: &str) -> io::Result<()> {
    let mut b = [0u8; 64];
    match s.read(&mut b).await? {
        0 => Ok(()),
        n => Err(data_err(format!(
            "{what}: {n} unexpected bytes where EOF was expected"
        ))),
    }
}

/// A per-stream failure signal shared by a stream's two ends: the side that fails closes the
/// channel, and the other side, which might otherwise wait forever (a picomux writer blocks for
/// good once its peer has sent FIN), gives up as well. Only used when something already failed.
pub(crate) type Kill = (Sender<()>, Receiver<()>);

pub(crate) fn kill_signals(n: usize) -> Arc<Vec<Kill>> {
    Arc::new((0..n).map(|_| async_channel::bounded::<()>(1)).collect())
}

pub(crate) async fn killable<T>(
    kill: &Kill,
    f: impl Future<Output = io::Result<T>>,
    other_side: &str,
) -> io::Result<T> {
    let r = f
        .or(async {
            let _ = kill.1.recv().await;
            Err(io::Error::other(format!(
                "gave up: the {other_side} of this stream failed"
            )))
        })
        .await;
    if r.is_err() {
        kill.0.close();
    }
    r
}

/// Bulk opener: index, N bytes, wait for the ack, close, read EOF.
pub(crate) async fn bulk_send(s: &mut BStream, idx: u32, n: u64) -> io::Result<()> {
    s.write_all(&idx.to_le_bytes()).await?;
    let mut sent = 0u64;
    while sent < n {
        let len = (n - sent).min(CHUNK as u64) as usize;
        s.write_all(pattern_at(idx, sent, len)).await?;
        sent += len as u64;
    }
    s.flush().await?;
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).await?;
    if ack[0] != 0xAC {
        return Err(data_err(format!(
            "stream {idx}: bad ack byte {:#x}",
            ack[0]
        )));
    }
    s.close().await?;
    expect_eof(s, &format!("bulk sender {idx} after close")).await
}

/// Bulk acceptor: index, exactly N verified bytes, ack, EOF, close. Returns (index, done time).
pub(crate) async fn bulk_recv(
    s: &mut BStream,
    n: u64,
    idx_seen: &AtomicU64,
    kills: &[Kill],
) -> io::Result<(u32, Instant)> {
    let mut idxb = [0u8; 4];
    s.read_exact(&mut idxb).await?;
    let idx = u32::from_le_bytes(idxb);
    idx_seen.store(idx as u64, Ordering::Relaxed);
    let kill = kills
        .get(idx as usize)
        .ok_or_else(|| data_err(format!("bad stream index {idx}")))?;
    killable(kill, bulk_recv_body(s, idx, n), "sender").await
}

pub(crate) async fn bulk_recv_body(
    s: &mut BStream,
    idx: u32,
    n: u64,
) -> io::Result<(u32, Instant)> {
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    while got < n {
        let want = (n - got).min(CHUNK as u64) as usize;
        let k = s.read(&mut buf[..want]).await?;
        if k == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("stream {idx}: EOF after {got} of {n} bytes (data lost)"),
            ));
        }
        if buf[..k] != *pattern_at(idx, got, k) {
            return Err(data_err(format!(
                "stream {idx}: wrong bytes within {got}..{} (corruption, duplication or reordering)",
                got + k as u64
            )));
        }
        got += k as u64;
    }
    let done = Instant::now();
    s.write_all(&[0xAC]).await?;
    s.flush().await?;
    expect_eof(s, &format!("bulk receiver {idx} after {n} bytes")).await?;
    s.close().await?;
    Ok((idx, done))
}

/// Generic echo until EOF, then close.
pub(crate) async fn echo_serve(mut s: BStream) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).await?;
        s.flush().await?;
    }
    s.close().await
}

/// One 64-byte round trip with message number `k`; returns its RTT.
pub(crate) async fn echo_once(s: &mut BStream, k: u64) -> io::Result<Duration> {
    let msg = pattern_at(0xFFFF, k * MSG as u64, MSG);
    let mut reply = [0u8; MSG];
    let t = Instant::now();
    s.write_all(msg).await?;
    s.flush().await?;
    s.read_exact(&mut reply).await?;
    let rtt = t.elapsed();
    if reply[..] != *msg {
        return Err(data_err(format!("echo reply {k} differs from the message")));
    }
    Ok(rtt)
}

pub(crate) async fn echo_finish(s: &mut BStream) -> io::Result<()> {
    s.close().await?;
    expect_eof(s, "echo client after close").await
}
