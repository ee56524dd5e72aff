//! Scenarios 1, 2 and 7: bulk transfer over one or many streams.

use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::{MResult, Outcome};
use crate::peers::Session;
use crate::roles::{bulk_recv, bulk_send, kill_signals, killable};
use crate::runtime::spawn;

/// Scenarios 1, 2 and 7: `streams` streams move `total` bytes together.
pub(crate) async fn bulk(sess: Arc<Session>, streams: u32, total: u64) -> MResult {
    let per = total / streams as u64;
    let kills = kill_signals(streams as usize);
    let start = Instant::now();
    let server = {
        let (sess, kills) = (sess.clone(), kills.clone());
        spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..streams {
                let mut s = sess.server.accept().await?;
                let kills = kills.clone();
                tasks.push(spawn(async move {
                    let seen = AtomicU64::new(u64::MAX);
                    let r = bulk_recv(&mut s, per, &seen, &kills).await;
                    (seen.load(Ordering::Relaxed), r)
                }));
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await);
            }
            io::Result::Ok(out)
        })
    };
    let senders: Vec<_> = (0..streams)
        .map(|idx| {
            let (sess, kills) = (sess.clone(), kills.clone());
            spawn(async move {
                let send = async {
                    let mut s = sess.client.open().await?;
                    bulk_send(&mut s, idx, per).await
                };
                killable(&kills[idx as usize], send, "receiver").await
            })
        })
        .collect();
    let mut failed: HashSet<u64> = HashSet::new();
    let mut errors = Vec::new();
    for (idx, t) in senders.into_iter().enumerate() {
        if let Err(e) = t.await {
            failed.insert(idx as u64);
            errors.push(format!("sender {idx}: {e}"));
        }
    }
    let received = server.await.map_err(|e| format!("accept failed: {e}"))?;
    let mut last = start;
    let mut first = None::<Instant>;
    let mut ok_bytes = 0u64;
    for (idx, r) in received {
        match r {
            Ok((_, done)) => {
                last = last.max(done);
                first = Some(first.map_or(done, |first| first.min(done)));
                ok_bytes += per;
            }
            Err(e) => {
                failed.insert(idx);
                errors.push(format!("receiver of stream {idx}: {e}"));
            }
        }
    }
    let secs = (last - start).as_secs_f64().max(1e-9);
    let mut out = Outcome {
        failed_streams: failed.len(),
        errors,
        ..Default::default()
    };
    out.values
        .insert("mbps".into(), ok_bytes as f64 / secs / 1e6);
    out.extra.insert("seconds".into(), json!(secs));
    out.extra.insert("verified_bytes".into(), json!(ok_bytes));
    if let Some(first) = first.filter(|_| streams > 1) {
        // How unevenly the streams shared the path (the verified ones): the last ones alone
        // may not fill it.
        let spread = (last - first).as_secs_f64();
        out.extra
            .insert("finish_spread_seconds".into(), json!(spread));
    }
    Ok(out)
}
