//! A stream's queue of written, not yet framed bytes: a list of fixed-capacity chunks.
//!
//! Frames take their bodies from the front as shared slices (no copy), while `write` fills the
//! back chunk's spare capacity only, so no chunk is ever reallocated. (A single `BytesMut` would
//! copy its unsent bytes into a new allocation whenever a write follows a frame that still
//! shares it.)

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::fifo::Fifo;

/// Smallest and largest chunk allocated for a write.
const MIN_CHUNK: usize = 4 << 10;
const MAX_CHUNK: usize = 64 << 10;
/// Spent chunks a session keeps for reuse.
const POOLED_CHUNKS: usize = 16;
/// How often a pool that keeps chunks looks whether one came back since its previous look; if
/// none did, it frees them all (so between one and two of these after the last data sent).
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// A session's spent chunks, reused once every frame taken from them has been written: a bulk
/// stream would otherwise allocate and free a chunk per chunk written, and the allocator handing
/// those pages back to the kernel costs page faults on the next allocation. Once no chunk has
/// come back for a while, the session sends no data and the pool frees them (on the session's
/// timer: see [`ChunkPool::release_due`]).
#[derive(Default)]
pub(crate) struct ChunkPool {
    spent: VecDeque<BytesMut>,
    /// Chunks given back so far: the session sends no data while this stays put.
    given_back: u64,
    /// While chunks are kept: when to look next, and `given_back` at the previous look.
    check: Option<(Instant, u64)>,
}

impl ChunkPool {
    /// An empty chunk with room for at least `capacity` bytes.
    fn chunk(&mut self, capacity: usize) -> BytesMut {
        for _ in 0..self.spent.len() {
            let mut chunk = self.spent.pop_front().expect("counted");
            if chunk.try_reclaim(capacity) {
                return chunk;
            }
            self.spent.push_back(chunk);
        }
        BytesMut::with_capacity(capacity)
    }

    /// Keeps an emptied chunk, dropping the oldest kept one beyond [`POOLED_CHUNKS`].
    fn give_back(&mut self, chunk: BytesMut) {
        self.given_back += 1;
        self.spent.push_back(chunk);
        if self.spent.len() > POOLED_CHUNKS {
            self.spent.pop_front();
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.spent.len()
    }

    /// Starts looking for idleness if chunks are kept and nothing looks yet; whether it did
    /// (the session's timer must then learn [`ChunkPool::release_due`]).
    pub(crate) fn arm(&mut self, now: Instant) -> bool {
        if self.spent.is_empty() || self.check.is_some() {
            return false;
        }
        self.check = Some((now + IDLE_CHECK, self.given_back));
        true
    }

    /// When the pool looks next whether it can free its chunks, if it keeps any.
    pub(crate) fn release_due(&self) -> Option<Instant> {
        self.check.map(|(at, _)| at)
    }

    /// Looks, if it is time at `now`: frees every kept chunk if none came back since the
    /// previous look, and looks again later otherwise.
    pub(crate) fn on_timeout(&mut self, now: Instant) {
        let Some((at, seen)) = self.check else {
            return;
        };
        if now < at {
            return;
        }
        if self.given_back == seen {
            self.clear();
        } else {
            self.check = None;
            self.arm(now);
        }
    }

    /// Frees every kept chunk.
    pub(crate) fn clear(&mut self) {
        self.spent = VecDeque::new();
        self.check = None;
    }
}

#[derive(Debug, Default)]
pub(crate) struct SendBuffer {
    chunks: Fifo<BytesMut>,
    len: usize,
}

impl SendBuffer {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies all of `data` in, into chunks from `pool` when it has any free.
    pub(crate) fn push(&mut self, mut data: &[u8], pool: &mut ChunkPool) {
        self.len += data.len();
        while !data.is_empty() {
            let room = self.chunks.back().map_or(0, |c| c.capacity() - c.len());
            if room == 0 {
                let capacity = data.len().clamp(MIN_CHUNK, MAX_CHUNK);
                self.chunks.push_back(pool.chunk(capacity));
                continue;
            }
            let n = room.min(data.len());
            let back = self.chunks.back_mut().expect("a chunk with room");
            back.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
    }

    /// Takes the first `n` bytes (at most `len()`) as shared slices, in order; emptied chunks go
    /// to `pool`.
    pub(crate) fn take(&mut self, mut n: usize, pool: &mut ChunkPool, mut each: impl FnMut(Bytes)) {
        debug_assert!(n <= self.len);
        self.len -= n;
        while n > 0 {
            let front = self
                .chunks
                .front_mut()
                .expect("len counts the chunks' bytes");
            let step = n.min(front.len());
            each(front.split_to(step).freeze());
            n -= step;
            if front.is_empty() {
                // An idle stream holds no chunk.
                pool.give_back(self.chunks.pop_front().expect("the front chunk"));
            }
        }
    }

    /// Drops everything queued and the chunks holding it.
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_come_out_in_order_across_chunks() {
        let mut buf = SendBuffer::default();
        let mut pool = ChunkPool::default();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(7_001) {
            buf.push(piece, &mut pool);
        }
        assert_eq!(buf.len(), data.len());
        let mut out = Vec::new();
        while !buf.is_empty() {
            let n = buf.len().min(65_535);
            buf.take(n, &mut pool, |b| out.extend_from_slice(&b));
        }
        assert_eq!(out, data);
    }

    #[test]
    fn writing_after_taking_never_moves_queued_bytes() {
        let mut buf = SendBuffer::default();
        let mut pool = ChunkPool::default();
        buf.push(&[1; 60_000], &mut pool);
        let mut taken = Vec::new();
        buf.take(10_000, &mut pool, |b| taken.push(b));
        let before = buf.chunks.front_mut().unwrap().as_ptr();
        buf.push(&[2; 4_000], &mut pool); // fits in the chunk's spare room
        assert_eq!(
            buf.chunks.front_mut().unwrap().as_ptr(),
            before,
            "the queued bytes stayed where they were"
        );
        assert_eq!(buf.len(), 54_000);
        assert!(taken[0].iter().all(|&b| b == 1));
        buf.take(54_000, &mut pool, |_| {});
        assert!(buf.chunks.is_empty(), "an emptied buffer holds no chunk");
    }

    #[test]
    fn a_spent_chunk_is_reused_once_its_frames_are_dropped() {
        let mut buf = SendBuffer::default();
        let mut pool = ChunkPool::default();
        buf.push(&[1; MAX_CHUNK], &mut pool);
        let mut frames = Vec::new();
        buf.take(MAX_CHUNK, &mut pool, |b| frames.push(b));
        assert_eq!(pool.len(), 1);
        let first = frames[0].as_ptr();
        // Still held by an unwritten frame: a new chunk.
        buf.push(&[2; MAX_CHUNK], &mut pool);
        buf.take(MAX_CHUNK, &mut pool, |b| frames.push(b));
        assert_ne!(frames[1].as_ptr(), first);
        assert_eq!(
            frames[0][..],
            [1; MAX_CHUNK],
            "the held chunk was overwritten"
        );
        frames.clear();
        buf.push(&[3; MAX_CHUNK], &mut pool);
        buf.take(MAX_CHUNK, &mut pool, |b| frames.push(b));
        assert_eq!(frames[0].as_ptr(), first, "the first chunk was not reused");
        assert_eq!(frames[0][..], [3; MAX_CHUNK]);
        for _ in 0..2 * POOLED_CHUNKS {
            buf.push(&[4; MAX_CHUNK], &mut pool);
            buf.take(MAX_CHUNK, &mut pool, |b| frames.push(b));
        }
        assert_eq!(pool.len(), POOLED_CHUNKS, "the pool is bounded");
    }

    #[test]
    fn a_pool_frees_its_chunks_once_none_came_back_between_two_looks() {
        let mut buf = SendBuffer::default();
        let mut pool = ChunkPool::default();
        let start = Instant::now();
        assert!(!pool.arm(start), "an empty pool has nothing to free");
        let mut send = |pool: &mut ChunkPool| {
            buf.push(&[1; MAX_CHUNK], pool);
            buf.take(MAX_CHUNK, pool, drop);
        };
        send(&mut pool);
        assert!(pool.arm(start));
        assert!(!pool.arm(start), "armed twice");
        assert_eq!(pool.release_due(), Some(start + IDLE_CHECK));
        pool.on_timeout(start + IDLE_CHECK / 2);
        assert_eq!(pool.len(), 1, "freed before the look");
        // Data went out since the arming: the pool looks again.
        send(&mut pool);
        let first_look = start + IDLE_CHECK;
        pool.on_timeout(first_look);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.release_due(), Some(first_look + IDLE_CHECK));
        // Nothing since: freed, and no more looks.
        pool.on_timeout(first_look + IDLE_CHECK);
        assert_eq!((pool.len(), pool.release_due()), (0, None));
    }
}
