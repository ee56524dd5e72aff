//! The connection's I/O: one reader, one writer and one timer, joined in a single future that
//! polls each of them only when its own waker fired.
//!
//! The reader never waits for the writer or for the application (except when the session's
//! receive buffer is full, which is the backpressure that bounds memory), so PINGs are answered
//! and other streams keep moving while one stream's reader is stalled.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use async_io::Timer;
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::future;
use futures_lite::AsyncWriteExt;
use parking_lot::Mutex;

use tracing::Instrument as _;

use crate::config::Protocol;
use crate::frame::{
    foreign_protocol_hint, ProtocolError, SmuxFraming, YamuxFraming, YamuxHeader, MAX_BODY,
};
use crate::read_buffer::{ReadBuffer, SHORT_READ};
use crate::session::Session;
use crate::shared::Shared;
use crate::transmit::Transmit;

/// Bytes of frames the writer gathers before one write to the connection.
const WRITE_BATCH: usize = 256 << 10;

/// Numbers sessions in log events (the `session` field of the `smolmux` span).
static NEXT_SESSION: AtomicU64 = AtomicU64::new(0);

/// The future that runs a session's I/O; from [`Mux::new`](crate::Mux::new).
///
/// Spawn it on any executor (`smol::spawn(driver).detach()`, `async_std::task::spawn(driver)`),
/// or poll it some other way: nothing moves on the connection unless it is polled. It resolves
/// when the session ends: `Ok(())` when the peer closed the connection or the session was closed
/// and every handle dropped, or the error that ended it (a protocol violation by the peer, a
/// PING timeout, an I/O error). Dropping it before then ends the session, failing every pending
/// operation.
#[must_use = "the driver does the session's I/O: spawn it"]
pub struct Driver {
    shared: Arc<Shared>,
    /// The reader, the writer and the timer; the driver is done when any of them is.
    loops: [Loop; 3],
    /// The waker of the task polling the driver, which every loop's waker wakes.
    task: Arc<Mutex<Option<Waker>>>,
}

/// One of the driver's loops, polled only when its own waker fired: a wake-up for the writer
/// (each message written) would otherwise cost the reader a failed read and a re-arm of the
/// reactor (two syscalls), and the timer a trip through the session lock.
struct Loop {
    future: Pin<Box<dyn Future<Output = ()> + Send>>,
    wake: Arc<LoopWake>,
    waker: Waker,
}

struct LoopWake {
    woken: AtomicBool,
    task: Arc<Mutex<Option<Waker>>>,
}

impl Wake for LoopWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(task) = &*self.task.lock() {
            task.wake_by_ref();
        }
    }
}

impl Loop {
    fn new(
        future: impl Future<Output = ()> + Send + 'static,
        task: &Arc<Mutex<Option<Waker>>>,
    ) -> Loop {
        let wake = Arc::new(LoopWake {
            // Polled on the driver's first poll.
            woken: AtomicBool::new(true),
            task: task.clone(),
        });
        Loop {
            future: Box::pin(future),
            waker: Waker::from(wake.clone()),
            wake,
        }
    }

    /// Polls the loop if its waker fired since its last poll; whether it is done.
    fn poll_if_woken(&mut self) -> bool {
        // Cleared before the poll, so that a wake-up during it is not lost.
        if !self.wake.woken.swap(false, Ordering::AcqRel) {
            return false;
        }
        let mut cx = Context::from_waker(&self.waker);
        self.future.as_mut().poll(&mut cx).is_ready()
    }
}

impl Driver {
    pub(crate) fn new<R, W>(shared: Arc<Shared>, read: R, write: W) -> Driver
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let session = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        let span = tracing::debug_span!("smolmux", session);
        span.in_scope(|| tracing::debug!("session started"));
        let task = Arc::new(Mutex::new(None));
        // The writer goes first: a message the application just wrote must not wait for the
        // reader's next read, which usually fails.
        let loops = [
            Loop::new(
                write_loop(shared.clone(), write).instrument(span.clone()),
                &task,
            ),
            Loop::new(
                read_loop(shared.clone(), read).instrument(span.clone()),
                &task,
            ),
            Loop::new(timer_loop(shared.clone()).instrument(span), &task),
        ];
        Driver {
            shared,
            loops,
            task,
        }
    }
}

impl Future for Driver {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut task = self.task.lock();
            if !task.as_ref().is_some_and(|task| task.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let mut done = false;
        for running in &mut self.loops {
            done |= running.poll_if_woken();
        }
        if !done {
            return Poll::Pending;
        }
        Poll::Ready(self.shared.with(|s| match s.end() {
            Some(end) if end.is_clean() => Ok(()),
            Some(end) => Err(end.error()),
            None => Err(io::Error::other("driver stopped before the session ended")),
        }))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.shared.with(|s| {
            if s.end().is_none() {
                s.fail(
                    io::ErrorKind::BrokenPipe,
                    "the session's driver was dropped",
                );
            }
        });
    }
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

/// Waits until the session has ended.
async fn wait_for_end(shared: &Shared) {
    loop {
        let listener = shared.state_event.listen();
        if shared.with(|s| s.end().is_some()) {
            return;
        }
        listener.await;
    }
}

fn io_failure(shared: &Shared, what: &str, err: io::Error) {
    shared.with(|s| s.on_io_error(err.kind(), format!("connection {what} failed: {err}")));
}

/// What handing the frames already read to the session did.
enum Dispatch {
    /// The session ended (perhaps because a frame broke the protocol).
    Ended,
    /// The session is full; frames may be left for later.
    Paused,
    /// Every complete frame was handed over; whether there was any.
    Done { any: bool },
}

/// Hands the complete frames in `buffer` to the session, stopping as soon as it is full, so that
/// it holds at most one frame past its limit.
fn dispatch(shared: &Shared, buffer: &mut ReadBuffer) -> Dispatch {
    let now = Instant::now();
    shared.with(|s| {
        let mut any = false;
        while !s.reader_paused() {
            let result = match buffer.next_frame(SmuxFraming(s.protocol())) {
                Ok(Some((header, body))) => s.on_frame(header, body, now),
                Ok(None) => return Dispatch::Done { any },
                Err(err) => Err(err),
            };
            if let Err(err) = result {
                let err = io::Error::from(err);
                s.fail(err.kind(), err.to_string());
                return Dispatch::Ended;
            }
            any = true;
        }
        Dispatch::Paused
    })
}

/// A yamux Data frame whose body is still arriving: a Go sender's frame is as long as the
/// window it was granted (megabytes), longer than a read segment, so bodies reach the session
/// in pieces.
struct PartialBody {
    header: YamuxHeader,
    left: usize,
}

/// [`dispatch`] for yamux frames: each header, then its body in pieces of at most
/// [`MAX_BODY`] bytes (so the session holds at most one piece past its receive budget, as it
/// holds at most one frame in the other dialects), then its end (FIN and RST act after the
/// body). `body` is the frame left unfinished by the previous call.
fn dispatch_yamux(
    shared: &Shared,
    buffer: &mut ReadBuffer,
    body: &mut Option<PartialBody>,
) -> Dispatch {
    let now = Instant::now();
    shared.with(|s| {
        let mut any = false;
        while !s.reader_paused() {
            match yamux_step(s, buffer, body, now) {
                Ok(true) => any = true,
                Ok(false) => return Dispatch::Done { any },
                Err(err) => {
                    let err = io::Error::from(err);
                    s.fail(err.kind(), err.to_string());
                    return Dispatch::Ended;
                }
            }
        }
        Dispatch::Paused
    })
}

/// Hands the session one yamux header or one piece of a body; whether there was one.
fn yamux_step(
    s: &mut Session,
    buffer: &mut ReadBuffer,
    body: &mut Option<PartialBody>,
    now: Instant,
) -> Result<bool, ProtocolError> {
    let Some(partial) = body else {
        let Some(header) = buffer.next_header(YamuxFraming)? else {
            return Ok(false);
        };
        s.on_yamux_header(header, now)?;
        match header.body_len() {
            0 => s.on_yamux_end(header)?,
            left => *body = Some(PartialBody { header, left }),
        }
        return Ok(true);
    };
    let Some(piece) = buffer.take_body(partial.left.min(MAX_BODY)) else {
        return Ok(false);
    };
    partial.left -= piece.len();
    s.on_yamux_body(partial.header.stream_id, piece);
    if partial.left == 0 {
        let header = partial.header;
        *body = None;
        s.on_yamux_end(header)?;
    }
    Ok(true)
}

/// Reads frames from the connection and hands them to the session, many frames per lock.
async fn read_loop<R: AsyncRead + Unpin>(shared: Arc<Shared>, mut read: R) {
    let mut buffer = ReadBuffer::new();
    // The dialect is chosen once: picomux's and smux's frames keep their own decoder.
    let yamux = shared.with(|s| s.protocol() == Protocol::Yamux);
    let mut yamux_body = None;
    // Whether the latest read was short, so that the next one will probably find nothing.
    let mut drained = false;
    loop {
        // Backpressure: wait while the session cannot take more.
        let alive = future::poll_fn(|cx| {
            shared.with(|s| {
                if s.end().is_some() {
                    Poll::Ready(false)
                } else if s.reader_must_wait(cx.waker()) {
                    Poll::Pending
                } else {
                    Poll::Ready(true)
                }
            })
        })
        .await;
        if !alive {
            return;
        }
        let dispatched = match yamux {
            true => dispatch_yamux(&shared, &mut buffer, &mut yamux_body),
            false => dispatch(&shared, &mut buffer),
        };
        match dispatched {
            Dispatch::Ended => return,
            Dispatch::Paused => continue,
            // Let the tasks these frames woke run first, on this thread while their data is in
            // cache, rather than after a read that fails and re-arms the reactor (two syscalls
            // on a message's way). This and writing before reading took 3-4 µs off a 40 µs
            // echo (docs/performance.md, step 20).
            Dispatch::Done { any: true } if drained => future::yield_now().await,
            Dispatch::Done { .. } => {}
        }
        let n = match buffer.fill(&mut read).await {
            Ok(n) => n,
            Err(err) => return io_failure(&shared, "read", err),
        };
        if n == 0 {
            let partial = buffer.pending();
            let in_body = yamux_body.as_ref().map(|body| body.left);
            let hint = foreign_protocol_hint(partial);
            shared.with(|s| {
                if let Some(left) = in_body {
                    s.fail(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed in the middle of a Data frame's body \
                             ({left} bytes of it missing)"
                        ),
                    );
                } else if partial.is_empty() {
                    s.on_eof();
                } else {
                    s.fail(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed in the middle of a frame ({} bytes of it received){hint}",
                            partial.len()
                        ),
                    );
                }
            });
            // The writer may still be sending our last FINs.
            return wait_for_end(&shared).await;
        }
        drained = n < SHORT_READ;
        if !drained {
            // The connection may well have more to read: let other tasks run (the streams'
            // readers and writers that the frames before woke) instead of holding the thread.
            // (Yielding after the dispatch instead cost 32 bulk streams a tenth of their
            // throughput.)
            future::yield_now().await;
        }
    }
}

/// What the writer does next.
enum WriteStep {
    Write,
    Flush,
    CloseWrite,
    Stop,
}

/// Takes frames from the session's scheduler and writes them, many frames per write, flushing
/// whenever nothing more is ready.
async fn write_loop<W: AsyncWrite + Unpin>(shared: Arc<Shared>, mut write: W) {
    let mut out = Transmit::default();
    let mut unflushed = false;
    loop {
        let step = future::poll_fn(|cx| {
            shared.with(|s| {
                if s.end().is_some() {
                    return Poll::Ready(WriteStep::Stop);
                }
                s.poll_transmit(&mut out, WRITE_BATCH, Instant::now());
                if !out.is_empty() {
                    Poll::Ready(WriteStep::Write)
                } else if unflushed {
                    Poll::Ready(WriteStep::Flush)
                } else if s.should_close_write() {
                    Poll::Ready(WriteStep::CloseWrite)
                } else {
                    s.set_writer_waker(cx.waker());
                    Poll::Pending
                }
            })
        })
        .await;
        let result = match step {
            WriteStep::Write => {
                unflushed = true;
                let result = write_batch(&mut write, &mut out).await;
                future::yield_now().await;
                result
            }
            WriteStep::Flush => {
                unflushed = false;
                write.flush().await
            }
            WriteStep::CloseWrite => {
                let result = write.close().await;
                if result.is_ok() {
                    shared.with(|s| s.on_write_closed());
                    // Nothing more to write; the reader goes on until the peer closes.
                    return wait_for_end(&shared).await;
                }
                result
            }
            WriteStep::Stop => return,
        };
        if let Err(err) = result {
            return io_failure(&shared, "write", err);
        }
    }
}

/// Writes the whole batch with vectored writes.
async fn write_batch<W: AsyncWrite + Unpin>(write: &mut W, out: &mut Transmit) -> io::Result<()> {
    while !out.is_empty() {
        let written =
            future::poll_fn(|cx| Pin::new(&mut *write).poll_write_vectored(cx, &out.io_slices()))
                .await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        out.advance(written);
    }
    Ok(())
}

/// Fires the session's timers: sends PINGs when due and ends the session when a PONG is late.
async fn timer_loop(shared: Arc<Shared>) {
    let mut timer = Timer::never();
    future::poll_fn(|cx| loop {
        let deadline = shared.with(|s| {
            s.on_timeout(Instant::now());
            s.set_timer_waker(cx.waker());
            match s.end() {
                Some(_) => None,
                None => Some(s.next_timeout()),
            }
        });
        match deadline {
            None => return Poll::Ready(()),
            Some(Some(at)) => timer.set_at(at),
            // No deadline: the session wakes this loop when one appears.
            Some(None) => return Poll::Pending,
        }
        if Pin::new(&mut timer).poll(cx).is_pending() {
            return Poll::Pending;
        }
    })
    .await
}
