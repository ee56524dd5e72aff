//! The measurements: one module per kind of scenario, each a function of a fresh session
//! returning an [`Outcome`].

pub(crate) mod bulk;
pub(crate) mod echo;
pub(crate) mod memory;
pub(crate) mod open_close;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use smol::Timer;

use crate::peers::{Impl, Session};
use crate::runtime::{block, with_timeout};

/// Streams of scenario 2 (and 7).
pub(crate) const BULK_STREAMS: u32 = 32;
/// Concurrent workers of scenario 5.
pub(crate) const OPEN_WORKERS: usize = 64;
/// Unmeasured round trips before scenario 3 measures.
pub(crate) const RTT_WARMUP: usize = 200;

/// What one run of one scenario on one implementation produced.
#[derive(Default, Debug)]
pub(crate) struct Outcome {
    /// metric key -> value
    pub(crate) values: Vec<(&'static str, f64)>,
    /// Streams that failed (only tolerated for picomux).
    pub(crate) failed_streams: usize,
    /// Sample errors of failed streams.
    pub(crate) errors: Vec<String>,
    pub(crate) extra: BTreeMap<String, Value>,
}

pub(crate) type MResult = Result<Outcome, String>;

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p / 100.0).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Runs one in-process measurement: a fresh session, the scenario under a time limit, a clean
/// teardown.
pub(crate) fn measure<F, Fut>(imp: Impl, timeout: Duration, body: F) -> MResult
where
    F: FnOnce(Arc<Session>) -> Fut + Send + 'static,
    Fut: Future<Output = MResult> + Send + 'static,
{
    block(async move {
        let sess = Arc::new(
            Session::new(imp)
                .await
                .map_err(|e| format!("session setup: {e}"))?,
        );
        let r = match with_timeout(timeout, body(sess.clone())).await {
            Some(r) => r,
            None => {
                // Leave the session and its tasks where they are: reporting matters more.
                let state = sess.debug_state();
                std::mem::forget(sess);
                return Err(format!("HANG: did not finish within {timeout:?}. {state}"));
            }
        };
        // Give detached per-stream tasks a moment to drop their session handles.
        let mut sess = sess;
        for _ in 0..200 {
            match Arc::try_unwrap(sess) {
                Ok(s) => {
                    return match r {
                        Ok(o) => s.teardown().await.map(|_| o),
                        Err(e) => Err(e),
                    };
                }
                Err(back) => {
                    sess = back;
                    Timer::after(Duration::from_millis(10)).await;
                }
            }
        }
        r.and(Err(
            "session still in use 2 s after the scenario ended".into()
        ))
    })
}
