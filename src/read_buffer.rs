//! The reader's buffers: each read from the connection fills a fixed-size segment, and bulk PSH
//! bodies reach the streams as shared slices of it, so received data is copied only by the
//! kernel and by the application's `read`.
//!
//! A segment is reused (without being zeroed again) once every body sliced from it has been read.
//! Memory stays bounded however slowly the application reads: at most [`SLICED_SEGMENTS`]
//! segments lend slices, and while all of them are held, reads go into one more segment whose
//! bodies are copied out, as small bodies always are (a 64-byte message must not hold on to a
//! whole segment). Either way the session counts each queued body's length against its receive
//! buffer. A connection quiet for a second (short reads only) keeps one segment.

use std::io;
use std::mem;
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_io::AsyncRead;
use futures_lite::AsyncReadExt;

use crate::frame::{FrameIter, Framing, ProtocolError};

/// Bytes one read may fill: room for several full frames.
const SEGMENT_LEN: usize = 256 << 10;
/// Segments whose bodies are handed out as slices.
const SLICED_SEGMENTS: usize = 4;
/// The segment read into while all the others are held: its bodies are always copied, so it is
/// always free again by the next read.
const COPIED_SEGMENT: usize = SLICED_SEGMENTS;
/// PSH bodies shorter than this are copied out of any segment.
const MIN_SLICED_BODY: usize = 4 << 10;
/// Reads shorter than this are short: the connection carries messages rather than bulk data
/// just now, and has probably nothing more to read yet.
pub(crate) const SHORT_READ: usize = 4 << 10;
/// After this long with short reads only, the free segments but one are freed. (Freeing them at
/// once would make bulk data that follows a message pay for new segments: the page faults of
/// 256 KiB doubled the p99 round trip of messages sent beside bulk data.)
const QUIET_AFTER: Duration = Duration::from_secs(1);

/// Received bytes, in segments, and the part of them not yet decoded.
pub(crate) struct ReadBuffer {
    /// Each segment's whole length (all of it initialized), or empty until first used.
    segments: [Bytes; SLICED_SEGMENTS + 1],
    /// Received bytes not yet decoded (the start of a frame): which segment, and where.
    pending: Option<(usize, Range<usize>)>,
    /// When the latest read that was not short ended.
    last_long_read: Instant,
}

impl ReadBuffer {
    pub(crate) fn new() -> Self {
        ReadBuffer {
            segments: Default::default(),
            pending: None,
            last_long_read: Instant::now(),
        }
    }

    /// Received bytes not yet decoded.
    pub(crate) fn pending(&self) -> &[u8] {
        self.pending
            .as_ref()
            .map_or(&[], |(index, range)| &self.segments[*index][range.clone()])
    }

    /// Reads once from `read` into a free segment, after the bytes still pending; the number of
    /// bytes read (0 at the end of the connection).
    pub(crate) async fn fill<R: AsyncRead + Unpin>(&mut self, read: &mut R) -> io::Result<usize> {
        let index = self.free_segment();
        let mut segment = self.take_for_writing(index);
        let carried = self.move_pending_to_front(&mut segment, index);
        let result = read.read(&mut segment[carried..]).await;
        let read = *result.as_ref().unwrap_or(&0);
        let filled = carried + read;
        self.segments[index] = segment.freeze();
        self.pending = (filled > 0).then_some((index, 0..filled));
        if read >= SHORT_READ {
            self.last_long_read = Instant::now();
        } else if self.last_long_read.elapsed() >= QUIET_AFTER {
            self.free_others(index);
        }
        result
    }

    /// Frees the segments other than `keep` that no body holds.
    fn free_others(&mut self, keep: usize) {
        for (i, segment) in self.segments.iter_mut().enumerate() {
            if i != keep && segment.is_unique() {
                *segment = Bytes::new();
            }
        }
    }

    /// Decodes the next complete frame of `framing` in the pending bytes, if there is one.
    pub(crate) fn next_frame<F: Framing>(
        &mut self,
        framing: F,
    ) -> Result<Option<(F::Header, Bytes)>, ProtocolError> {
        let Some((index, range)) = &mut self.pending else {
            return Ok(None);
        };
        let segment = &self.segments[*index];
        let mut frames = FrameIter::with_framing(&segment[range.clone()], framing);
        let Some((header, body)) = frames.next_frame()? else {
            return Ok(None);
        };
        let copy =
            F::carries_data(&header) && (*index == COPIED_SEGMENT || body.len() < MIN_SLICED_BODY);
        let body = if copy {
            Bytes::copy_from_slice(body)
        } else {
            // Other frames' bodies are read and dropped before the session returns.
            let start = range.start + F::HEADER_LEN;
            segment.slice(start..start + body.len())
        };
        range.start += frames.consumed();
        if range.start == range.end {
            self.pending = None;
        }
        Ok(Some((header, body)))
    }

    /// The first segment no body holds any more, or the copied one.
    fn free_segment(&self) -> usize {
        (0..SLICED_SEGMENTS)
            .find(|&i| self.segments[i].is_empty() || self.segments[i].is_unique())
            .unwrap_or(COPIED_SEGMENT)
    }

    /// The segment at `index`, writable; a new one the first time.
    fn take_for_writing(&mut self, index: usize) -> BytesMut {
        let segment = mem::take(&mut self.segments[index]);
        if segment.is_empty() {
            return BytesMut::zeroed(SEGMENT_LEN);
        }
        // Unique: `free_segment` checked (pending bytes are a range, not a reference).
        segment
            .try_into_mut()
            .unwrap_or_else(|_| BytesMut::zeroed(SEGMENT_LEN))
    }

    /// Copies the pending bytes to the front of `segment` (which was `segments[index]`); their
    /// length.
    fn move_pending_to_front(&mut self, segment: &mut BytesMut, index: usize) -> usize {
        let Some((from, range)) = self.pending.take() else {
            return 0;
        };
        let len = range.len();
        if from == index {
            segment.copy_within(range, 0);
        } else {
            segment[..len].copy_from_slice(&self.segments[from][range]);
        }
        len
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::future::block_on;

    use super::*;
    use crate::frame::{encode_frame, Command, Header, Protocol, SmuxFraming};

    fn psh(id: u32, body: &[u8]) -> Vec<u8> {
        let mut frame = BytesMut::new();
        encode_frame(&mut frame, Command::Psh, id, body);
        frame.to_vec()
    }

    fn fill_from(buffer: &mut ReadBuffer, bytes: &[u8]) -> usize {
        block_on(buffer.fill(&mut &bytes[..])).unwrap()
    }

    fn frames(buffer: &mut ReadBuffer) -> Vec<(Header, Bytes)> {
        std::iter::from_fn(|| buffer.next_frame(SmuxFraming(Protocol::Picomux)).unwrap()).collect()
    }

    fn segment_range(buffer: &ReadBuffer, index: usize) -> Range<usize> {
        let segment = &buffer.segments[index];
        let start = segment.as_ptr() as usize;
        start..start + segment.len()
    }

    fn lies_in(body: &Bytes, range: &Range<usize>) -> bool {
        range.contains(&(body.as_ptr() as usize))
    }

    #[test]
    fn bulk_bodies_are_slices_of_the_segment_and_small_ones_copies() {
        let mut buffer = ReadBuffer::new();
        let big = vec![7; 40_000];
        let wire = [psh(1, &big), psh(3, b"hello")].concat();
        assert_eq!(fill_from(&mut buffer, &wire), wire.len());
        let got = frames(&mut buffer);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, big);
        assert_eq!(got[1].1, &b"hello"[..]);
        let segment = segment_range(&buffer, 0);
        assert!(lies_in(&got[0].1, &segment), "the bulk body was copied");
        assert!(
            !lies_in(&got[1].1, &segment),
            "the small body holds the segment"
        );
        assert_eq!(buffer.pending().len(), 0);
    }

    #[test]
    fn yamux_data_bodies_are_sliced_after_its_12_byte_header() {
        use crate::frame::{Flags, FrameType, YamuxFraming, YamuxHeader};
        let header = |frame_type, stream_id, length| YamuxHeader {
            frame_type,
            flags: Flags::SYN,
            stream_id,
            length,
        };
        let big = vec![7; 40_000];
        let mut wire = BytesMut::new();
        header(FrameType::Data, 1, big.len() as u32).encode(&mut wire);
        wire.extend_from_slice(&big);
        // A Window Update's length is a delta, not a body: the Data frame after it follows.
        header(FrameType::WindowUpdate, 3, 1 << 20).encode(&mut wire);
        header(FrameType::Data, 3, 5).encode(&mut wire);
        wire.extend_from_slice(b"hello");
        let mut buffer = ReadBuffer::new();
        assert_eq!(fill_from(&mut buffer, &wire), wire.len());
        let got: Vec<_> = std::iter::from_fn(|| buffer.next_frame(YamuxFraming).unwrap()).collect();
        let summary: Vec<_> = got
            .iter()
            .map(|(h, body)| (h.frame_type, h.stream_id, body.len()))
            .collect();
        assert_eq!(
            summary,
            [
                (FrameType::Data, 1, 40_000),
                (FrameType::WindowUpdate, 3, 0),
                (FrameType::Data, 3, 5)
            ]
        );
        assert_eq!(got[0].1, big);
        assert_eq!(got[2].1, &b"hello"[..]);
        let segment = segment_range(&buffer, 0);
        assert!(lies_in(&got[0].1, &segment), "the bulk body was copied");
        assert!(
            !lies_in(&got[2].1, &segment),
            "the small body holds the segment"
        );
        assert_eq!(buffer.pending().len(), 0);
    }

    #[test]
    fn a_partial_frame_moves_to_the_front_of_the_next_read() {
        let wire = [psh(1, &[1; 30_000]), psh(2, &[2; 30_000])].concat();
        let (first, second) = wire.split_at(45_000);
        let mut buffer = ReadBuffer::new();
        fill_from(&mut buffer, first);
        let one = frames(&mut buffer);
        assert_eq!(one.len(), 1);
        assert_eq!(buffer.pending().len(), 45_000 - 30_008);
        // The first body still holds segment 0, so the rest goes into segment 1.
        fill_from(&mut buffer, second);
        let two = frames(&mut buffer);
        assert_eq!(two.len(), 1);
        assert_eq!(two[0].0.stream_id, 2);
        assert_eq!(two[0].1, vec![2; 30_000]);
        assert!(lies_in(&two[0].1, &segment_range(&buffer, 1)));
        // Once both bodies are read, segment 0 is free again: a partial frame at the end of it
        // moves to its own front.
        drop((one, two));
        let (third, fourth) = wire.split_at(10_000);
        fill_from(&mut buffer, third);
        assert_eq!(buffer.pending, Some((0, 0..10_000)));
        fill_from(&mut buffer, fourth);
        let all = frames(&mut buffer);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].1, vec![1; 30_000]);
        assert_eq!(all[1].1, vec![2; 30_000]);
    }

    #[test]
    fn a_segment_is_reused_once_its_bodies_are_read() {
        let wire = psh(1, &[9; 60_000]);
        let mut buffer = ReadBuffer::new();
        fill_from(&mut buffer, &wire);
        let first = segment_range(&buffer, 0);
        drop(frames(&mut buffer));
        fill_from(&mut buffer, &wire);
        assert_eq!(segment_range(&buffer, 0), first, "segment 0 was not reused");
        assert!(
            buffer.segments[1].is_empty(),
            "a second segment was allocated"
        );
    }

    #[test]
    fn a_quiet_connection_frees_the_other_free_segments() {
        let wire = psh(1, &[3; 60_000]);
        let mut buffer = ReadBuffer::new();
        let mut unread = Vec::new();
        for _ in 0..3 {
            fill_from(&mut buffer, &wire);
            unread.extend(frames(&mut buffer));
        }
        let allocated = |b: &ReadBuffer| b.segments.iter().filter(|s| !s.is_empty()).count();
        assert_eq!(allocated(&buffer), 3);
        let held = unread.pop().unwrap(); // the body in segment 2
        drop(unread);
        // A message between bulk reads frees nothing: the bulk data goes on.
        fill_from(&mut buffer, &psh(1, b"a message"));
        assert_eq!(frames(&mut buffer)[0].1, &b"a message"[..]);
        assert_eq!(allocated(&buffer), 3);
        // A second later, with short reads only, the connection is quiet.
        buffer.last_long_read -= QUIET_AFTER;
        fill_from(&mut buffer, &psh(1, b"quiet now"));
        assert_eq!(frames(&mut buffer)[0].1, &b"quiet now"[..]);
        assert_eq!(
            allocated(&buffer),
            2,
            "segment 0 (read into) and 2 (held) remain"
        );
        assert!(buffer.segments[1].is_empty());
        assert_eq!(held.1, vec![3; 60_000]);
    }

    #[test]
    fn unread_bodies_hold_a_bounded_number_of_segments() {
        let wire = psh(1, &[5; 60_000]);
        let mut buffer = ReadBuffer::new();
        let mut unread = Vec::new();
        for _ in 0..3 * SLICED_SEGMENTS {
            fill_from(&mut buffer, &wire);
            unread.extend(frames(&mut buffer));
        }
        assert_eq!(unread.len(), 3 * SLICED_SEGMENTS);
        assert!(unread.iter().all(|(_, body)| body[..] == [5; 60_000]));
        let segments: Vec<Range<usize>> = (0..=SLICED_SEGMENTS)
            .map(|i| segment_range(&buffer, i))
            .collect();
        let sliced = |body: &Bytes| segments.iter().any(|s| lies_in(body, s));
        let held = unread.iter().filter(|(_, body)| sliced(body)).count();
        assert_eq!(
            held, SLICED_SEGMENTS,
            "only the sliced segments lend bodies"
        );
        assert_eq!(buffer.free_segment(), COPIED_SEGMENT);
    }
}
