//! An in-memory duplex connection for tests: delivers bytes in random chunk sizes, returns
//! `Pending` at random, and can inject an error or EOF after a chosen number of bytes.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures_lite::{AsyncRead, AsyncWrite};
use parking_lot::Mutex;

/// What can go wrong on one direction of the pipe.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Largest chunk a single read or write moves (at least 1).
    pub max_chunk: usize,
    /// Chance, in percent, that a read or write returns `Pending` first.
    pub pending_percent: u8,
    /// After this many bytes have passed, the reader sees this outcome instead of data.
    pub cut_after: Option<(usize, Cut)>,
}

/// How the connection dies when `cut_after` is reached.
#[derive(Clone, Copy, Debug)]
pub enum Cut {
    Eof,
    Error,
}

struct Direction {
    buf: VecDeque<u8>,
    capacity: usize,
    passed: usize,
    writer_closed: bool,
    reader_gone: bool,
    faults: Faults,
    rng: fastrand::Rng,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

type Shared = Arc<Mutex<Direction>>;

/// One end of the pipe: reads what the other end writes.
pub struct End {
    incoming: Shared,
    outgoing: Shared,
}

fn direction(capacity: usize, faults: Faults, seed: u64) -> Shared {
    Arc::new(Mutex::new(Direction {
        buf: VecDeque::new(),
        capacity,
        passed: 0,
        writer_closed: false,
        reader_gone: false,
        faults,
        rng: fastrand::Rng::with_seed(seed),
        read_waker: None,
        write_waker: None,
    }))
}

/// A connected pair; `a_to_b` and `b_to_a` set the faults of each direction.
pub fn duplex(capacity: usize, a_to_b: Faults, b_to_a: Faults, seed: u64) -> (End, End) {
    let ab = direction(capacity, a_to_b, seed);
    let ba = direction(capacity, b_to_a, seed.wrapping_add(1));
    (
        End {
            incoming: ba.clone(),
            outgoing: ab.clone(),
        },
        End {
            incoming: ab,
            outgoing: ba,
        },
    )
}

impl Direction {
    fn maybe_stall(&mut self, cx: &mut Context<'_>) -> bool {
        if self.faults.pending_percent > 0 && self.rng.u8(..100) < self.faults.pending_percent {
            cx.waker().wake_by_ref();
            return true;
        }
        false
    }

    fn chunk(&mut self, want: usize) -> usize {
        let max = self.faults.max_chunk.max(1);
        want.min(self.rng.usize(1..=max))
    }
}

impl AsyncRead for End {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut d = self.incoming.lock();
        if d.maybe_stall(cx) {
            return Poll::Pending;
        }
        if let Some((at, cut)) = d.faults.cut_after {
            if d.passed >= at {
                return Poll::Ready(match cut {
                    Cut::Eof => Ok(0),
                    Cut::Error => Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "injected fault",
                    )),
                });
            }
        }
        if d.buf.is_empty() {
            if d.writer_closed {
                return Poll::Ready(Ok(0));
            }
            d.read_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let mut n = d.chunk(buf.len()).min(d.buf.len());
        if let Some((at, _)) = d.faults.cut_after {
            n = n.min(at - d.passed);
        }
        for (slot, byte) in buf.iter_mut().zip(d.buf.drain(..n)) {
            *slot = byte;
        }
        d.passed += n;
        if let Some(w) = d.write_waker.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for End {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut d = self.outgoing.lock();
        if d.reader_gone || d.writer_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "pipe closed",
            )));
        }
        if d.maybe_stall(cx) {
            return Poll::Pending;
        }
        let room = d.capacity - d.buf.len();
        if room == 0 {
            d.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = d.chunk(buf.len()).min(room);
        d.buf.extend(&buf[..n]);
        if let Some(w) = d.read_waker.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut d = self.outgoing.lock();
        d.writer_closed = true;
        if let Some(w) = d.read_waker.take() {
            w.wake();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for End {
    fn drop(&mut self) {
        for (shared, reading) in [(&self.incoming, true), (&self.outgoing, false)] {
            let mut d = shared.lock();
            if reading {
                d.reader_gone = true;
            } else {
                d.writer_closed = true;
            }
            let wakers: Vec<Waker> = d
                .read_waker
                .take()
                .into_iter()
                .chain(d.write_waker.take())
                .collect();
            drop(d);
            wakers.into_iter().for_each(Waker::wake);
        }
    }
}
