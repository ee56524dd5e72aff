//! Scenario 6: heap per idle stream.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::Timer;

use super::{MResult, Outcome};
use crate::alloc::LIVE;
use crate::peers::{BStream, Session};
use crate::roles::expect_eof;
use crate::runtime::spawn;

/// Scenario 6: heap bytes per idle stream (both ends).
pub(crate) async fn idle_memory(sess: Arc<Session>, k: usize) -> MResult {
    let mut client_streams: Vec<BStream> = Vec::with_capacity(k);
    let (held_tx, held_rx) = async_channel::bounded::<()>(1);
    // Let the session settle (first PINGs, lazily created state) before the baseline.
    Timer::after(Duration::from_millis(150)).await;
    let base = LIVE.load(Ordering::Relaxed);
    let server = {
        let sess = sess.clone();
        spawn(async move {
            let mut held: Vec<BStream> = Vec::with_capacity(k);
            for _ in 0..k {
                let mut s = sess.server.accept().await?;
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await?;
                s.write_all(&[2]).await?;
                s.flush().await?;
                held.push(s);
            }
            // Hold the streams until the measurement is taken.
            let _ = held_rx.recv().await;
            io::Result::Ok(held)
        })
    };
    for i in 0..k {
        let mut s = sess
            .client
            .open()
            .await
            .map_err(|e| format!("open {i}: {e}"))?;
        s.write_all(&[1])
            .await
            .map_err(|e| format!("stream {i}: {e}"))?;
        s.flush().await.map_err(|e| format!("stream {i}: {e}"))?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b)
            .await
            .map_err(|e| format!("stream {i}: {e}"))?;
        if b[0] != 2 {
            return Err(format!("stream {i}: bad handshake byte"));
        }
        client_streams.push(s);
    }
    Timer::after(Duration::from_millis(200)).await;
    let live = LIVE.load(Ordering::Relaxed);
    let _ = held_tx.send(()).await;
    let server_streams = server.await.map_err(|e| format!("accept side: {e}"))?;
    let per = (live - base) as f64 / k as f64;
    // Close everything, and see every close arrive, before the session is torn down.
    let mut all: Vec<BStream> = client_streams.into_iter().chain(server_streams).collect();
    for (i, s) in all.iter_mut().enumerate() {
        s.close()
            .await
            .map_err(|e| format!("closing idle stream {i}: {e}"))?;
    }
    for (i, s) in all.iter_mut().enumerate() {
        expect_eof(s, "idle stream")
            .await
            .map_err(|e| format!("idle stream {i}: {e}"))?;
    }
    drop(all);
    let mut out = Outcome::default();
    out.values.insert("bytes_per_stream".into(), per);
    Ok(out)
}
