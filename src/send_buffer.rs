//! A stream's queue of written, not yet framed bytes: a list of fixed-capacity chunks.
//!
//! Frames take their bodies from the front as shared slices (no copy), while `write` fills the
//! back chunk's spare capacity only, so no chunk is ever reallocated. (A single `BytesMut` would
//! copy its unsent bytes into a new allocation whenever a write follows a frame that still
//! shares it.)

use bytes::{Bytes, BytesMut};

use crate::fifo::Fifo;

/// Smallest and largest chunk allocated for a write.
const MIN_CHUNK: usize = 4 << 10;
const MAX_CHUNK: usize = 64 << 10;

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

    /// Copies all of `data` in.
    pub(crate) fn push(&mut self, mut data: &[u8]) {
        self.len += data.len();
        while !data.is_empty() {
            let room = self.chunks.back().map_or(0, |c| c.capacity() - c.len());
            if room == 0 {
                let capacity = data.len().clamp(MIN_CHUNK, MAX_CHUNK);
                self.chunks.push_back(BytesMut::with_capacity(capacity));
                continue;
            }
            let n = room.min(data.len());
            let back = self.chunks.back_mut().expect("a chunk with room");
            back.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
    }

    /// Takes the first `n` bytes (at most `len()`) as shared slices, in order.
    pub(crate) fn take(&mut self, mut n: usize, mut each: impl FnMut(Bytes)) {
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
                // Its room is not kept: an idle stream holds no chunk.
                self.chunks.pop_front();
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
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(7_001) {
            buf.push(piece);
        }
        assert_eq!(buf.len(), data.len());
        let mut out = Vec::new();
        while !buf.is_empty() {
            let n = buf.len().min(65_535);
            buf.take(n, |b| out.extend_from_slice(&b));
        }
        assert_eq!(out, data);
    }

    #[test]
    fn writing_after_taking_never_moves_queued_bytes() {
        let mut buf = SendBuffer::default();
        buf.push(&[1; 60_000]);
        let mut taken = Vec::new();
        buf.take(10_000, |b| taken.push(b));
        let before = buf.chunks.front_mut().unwrap().as_ptr();
        buf.push(&[2; 4_000]); // fits in the chunk's spare room
        assert_eq!(
            buf.chunks.front_mut().unwrap().as_ptr(),
            before,
            "the queued bytes stayed where they were"
        );
        assert_eq!(buf.len(), 54_000);
        assert!(taken[0].iter().all(|&b| b == 1));
        buf.take(54_000, |_| {});
        assert!(buf.chunks.is_empty(), "an emptied buffer holds no chunk");
    }
}
