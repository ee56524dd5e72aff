//! Encoded frames waiting to be written: headers and small bodies are copied into one buffer,
//! bulk bodies stay shared slices of the streams' send buffers, and the whole batch goes to the
//! connection in vectored writes, so bulk data is copied once (by the kernel) after `write`.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Most slices handed to one vectored write (Linux accepts up to 1,024).
const MAX_SLICES: usize = 64;
/// Inline bytes a batch may encode and still leave its buffer for the next batch: frame headers
/// and messages need no more room. A batch of many small bodies grows the buffer up to the whole
/// batch (a quarter of a MiB), which an idle session would otherwise hold for good, so such a
/// buffer is freed once its batch is written.
const KEPT_INLINE: usize = 16 << 10;

/// A batch of encoded frames, in order.
#[derive(Default)]
pub(crate) struct Transmit {
    /// Bytes encoded since the last shared body.
    inline: BytesMut,
    /// Earlier parts, in order: inline runs and shared bodies.
    parts: VecDeque<Bytes>,
    /// Total bytes in `parts` and `inline`.
    len: usize,
    /// Bytes encoded inline since the batch began (which the inline buffer grew to hold).
    inline_encoded: usize,
}

impl Transmit {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends encoded bytes by calling `encode` on the inline buffer.
    pub(crate) fn encode(&mut self, encode: impl FnOnce(&mut BytesMut)) {
        let before = self.inline.len();
        encode(&mut self.inline);
        let encoded = self.inline.len() - before;
        self.len += encoded;
        self.inline_encoded += encoded;
    }

    /// Appends a body without copying it.
    pub(crate) fn push_shared(&mut self, body: Bytes) {
        if !self.inline.is_empty() {
            self.parts.push_back(self.inline.split().freeze());
        }
        self.len += body.len();
        self.parts.push_back(body);
    }

    /// The bytes to write next, as slices for a vectored write.
    pub(crate) fn io_slices(&self) -> Vec<IoSlice<'_>> {
        let mut slices: Vec<IoSlice<'_>> = self
            .parts
            .iter()
            .take(MAX_SLICES)
            .map(|part| IoSlice::new(part))
            .collect();
        if slices.len() < MAX_SLICES && !self.inline.is_empty() {
            slices.push(IoSlice::new(&self.inline));
        }
        slices
    }

    /// Drops the first `n` bytes, which have been written.
    pub(crate) fn advance(&mut self, mut n: usize) {
        debug_assert!(n <= self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.parts.front_mut() else {
                self.inline.advance(n);
                break;
            };
            let step = n.min(front.len());
            front.advance(step);
            n -= step;
            if front.is_empty() {
                self.parts.pop_front();
            }
        }
        if self.len == 0 {
            if self.inline_encoded > KEPT_INLINE {
                self.inline = BytesMut::new();
            } else {
                // Reuse the inline buffer's allocation from its start.
                self.inline.clear();
            }
            self.inline_encoded = 0;
        }
    }

    /// The whole batch as one buffer (for tests).
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.len);
        for part in &self.parts {
            all.extend_from_slice(part);
        }
        all.extend_from_slice(&self.inline);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_keep_their_order_through_partial_writes() {
        let mut t = Transmit::default();
        t.encode(|b| b.extend_from_slice(b"head1"));
        t.push_shared(Bytes::from_static(b"BODY1"));
        t.encode(|b| b.extend_from_slice(b"head2"));
        t.push_shared(Bytes::from_static(b"BODY2"));
        t.encode(|b| b.extend_from_slice(b"tail"));
        assert_eq!(t.len(), 24);
        assert_eq!(t.to_vec(), b"head1BODY1head2BODY2tail");
        let mut written = Vec::new();
        for step in [3, 4, 1, 9, 7] {
            let slices = t.io_slices();
            let flat: Vec<u8> = slices.iter().flat_map(|s| s.iter().copied()).collect();
            written.extend_from_slice(&flat[..step]);
            t.advance(step);
        }
        assert!(t.is_empty());
        assert_eq!(written, b"head1BODY1head2BODY2tail");
    }

    #[test]
    fn a_batch_of_many_small_bodies_leaves_no_large_buffer_behind() {
        let mut t = Transmit::default();
        for _ in 0..1_000 {
            t.encode(|b| b.extend_from_slice(&[5; 200]));
        }
        t.advance(100_000);
        t.advance(t.len());
        assert_eq!(t.inline.capacity(), 0, "the batch's buffer is kept");
        // A small batch keeps its buffer for the next one.
        t.encode(|b| b.extend_from_slice(&[6; 200]));
        let small = t.inline.as_ptr();
        t.advance(200);
        t.encode(|b| b.extend_from_slice(&[7; 200]));
        assert_eq!(t.inline.as_ptr(), small, "a new buffer for a small batch");
    }
}
