//! The runtime every implementation shares: one smol executor driven by two threads.

use std::future::Future;
use std::time::Duration;

use futures_lite::future::{self, FutureExt as _};
use smol::{Executor, Task, Timer};

pub(crate) static EX: Executor<'static> = Executor::new();
pub(crate) const EXECUTOR_THREADS: usize = 2;

pub(crate) fn start_executor() {
    for i in 0..EXECUTOR_THREADS {
        std::thread::Builder::new()
            .name(format!("bench-ex-{i}"))
            .spawn(|| smol::block_on(EX.run(future::pending::<()>())))
            .expect("spawn executor thread");
    }
}

pub(crate) fn spawn<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> Task<T> {
    EX.spawn(f)
}

/// Runs a future on the executor and waits for it from this (non-executor) thread.
pub(crate) fn block<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    smol::block_on(EX.spawn(f))
}

pub(crate) async fn with_timeout<T>(d: Duration, f: impl Future<Output = T>) -> Option<T> {
    async { Some(f.await) }
        .or(async {
            Timer::after(d).await;
            None
        })
        .await
}
