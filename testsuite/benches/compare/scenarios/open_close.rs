//! Scenario 5: stream churn.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::{MResult, Outcome, OPEN_WORKERS};
use crate::peers::Session;
use crate::roles::{echo_finish, echo_once, echo_serve};
use crate::runtime::spawn;

/// Scenario 5: open + 64-byte echo + close, `OPEN_WORKERS` workers, `count` streams in all.
pub(crate) async fn open_close(sess: Arc<Session>, count: usize) -> MResult {
    let server = {
        let sess = sess.clone();
        spawn(async move {
            let mut tasks = Vec::with_capacity(count);
            for _ in 0..count {
                let s = sess.server.accept().await?;
                tasks.push(spawn(echo_serve(s)));
            }
            let mut errors = Vec::new();
            for t in tasks {
                if let Err(e) = t.await {
                    errors.push(format!("echo server: {e}"));
                }
            }
            io::Result::Ok(errors)
        })
    };
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..OPEN_WORKERS)
        .map(|_| {
            let (sess, next) = (sess.clone(), next.clone());
            spawn(async move {
                let mut errors = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= count {
                        return errors;
                    }
                    let r = async {
                        let mut s = sess.client.open().await?;
                        echo_once(&mut s, k as u64).await?;
                        echo_finish(&mut s).await
                    }
                    .await;
                    if let Err(e) = r {
                        errors.push(format!("stream {k}: {e}"));
                    }
                }
            })
        })
        .collect();
    let mut errors = Vec::new();
    for w in workers {
        errors.extend(w.await);
    }
    let secs = start.elapsed().as_secs_f64();
    let failed = errors.len();
    let server_errors = server.await.map_err(|e| format!("accept failed: {e}"))?;
    errors.extend(server_errors);
    let mut out = Outcome {
        failed_streams: failed.max(errors.len() - failed),
        errors,
        ..Default::default()
    };
    out.values
        .insert("streams_per_s".into(), count as f64 / secs);
    Ok(out)
}
