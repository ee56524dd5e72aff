//! Scenarios 6 and 7: heap per idle stream, and peak RSS of a child process.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use serde_json::{json, Value};
use smol::Timer;

use super::bulk::bulk;
use super::{MResult, Outcome, BULK_STREAMS};
use crate::alloc::LIVE;
use crate::pattern::PATTERN;
use crate::peers::{BStream, Impl, Session};
use crate::roles::expect_eof;
use crate::runtime::{block, spawn, start_executor, with_timeout};
use crate::Opts;

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
    out.values.push(("bytes_per_stream", per));
    Ok(out)
}

/// Scenario 7, parent side: run scenario 2 in a child process and read its peak RSS.
pub(crate) fn peak_rss_child(imp: Impl, opts: &Opts) -> MResult {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = std::process::Command::new(exe)
        .arg("--child-rss")
        .arg(imp.key())
        .env("BENCH_BULK_BYTES", opts.bulk_bytes.to_string())
        .env("BENCH_TIMEOUT_SECS", opts.timeout.as_secs_f64().to_string())
        .output()
        .map_err(|e| format!("spawning the child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("CHILD_RESULT "));
    let Some(line) = line.filter(|_| out.status.success()) else {
        return Err(format!(
            "child for {} failed ({}): {}",
            imp.key(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    };
    let v: Value = serde_json::from_str(line).map_err(|e| format!("child output {line:?}: {e}"))?;
    let mut o = Outcome {
        failed_streams: v["failed_streams"].as_u64().unwrap_or(0) as usize,
        ..Default::default()
    };
    if let Some(errs) = v["errors"].as_array() {
        o.errors = errs
            .iter()
            .filter_map(|e| e.as_str().map(String::from))
            .collect();
    }
    o.values.push((
        "peak_rss_mb",
        v["vmhwm_kb"].as_f64().unwrap_or(f64::NAN) * 1024.0 / 1e6,
    ));
    o.extra.insert(
        "baseline_rss_mb".into(),
        json!(v["baseline_rss_kb"].as_f64().unwrap_or(f64::NAN) * 1024.0 / 1e6),
    );
    o.extra.insert("mbps".into(), v["mbps"].clone());
    Ok(o)
}

pub(crate) fn proc_status_kb(field: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Scenario 7, child side.
pub(crate) fn child_main(imp_name: &str) -> ! {
    let imp = Impl::parse(imp_name).unwrap_or_else(|| {
        eprintln!("unknown implementation {imp_name}");
        std::process::exit(2)
    });
    let opts = Opts::from_env();
    start_executor();
    LazyLock::force(&PATTERN);
    let baseline = proc_status_kb("VmRSS:").unwrap_or(f64::NAN);
    let timeout = opts.timeout;
    let total = opts.bulk_bytes;
    let r = block(async move {
        let sess = Arc::new(Session::new(imp).await.map_err(|e| format!("setup: {e}"))?);
        let r = with_timeout(timeout, bulk(sess.clone(), BULK_STREAMS, total)).await;
        let r = match r {
            Some(r) => r?,
            None => {
                return Err(format!(
                    "timed out after {timeout:?}: {}",
                    sess.debug_state()
                ))
            }
        };
        match Arc::try_unwrap(sess) {
            Ok(s) => s.teardown().await?,
            Err(_) => return Err("session still in use after the run".into()),
        }
        Ok(r)
    });
    match r {
        Ok(o) => {
            if o.failed_streams > 0 && !imp.failures_tolerated() {
                eprintln!("{} stream(s) failed: {:?}", o.failed_streams, o.errors);
                std::process::exit(1);
            }
            let hwm = proc_status_kb("VmHWM:").unwrap_or(f64::NAN);
            println!(
                "CHILD_RESULT {}",
                json!({
                    "vmhwm_kb": hwm,
                    "baseline_rss_kb": baseline,
                    "mbps": o.values[0].1,
                    "failed_streams": o.failed_streams,
                    "errors": o.errors,
                })
            );
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}
