//! The reader's buffers. While the connection is quiet, each read borrows a scratch buffer that
//! every session on the thread shares and keeps only the bytes it got, so an idle session holds
//! no read buffer at all. A read that fills the scratch buffer means bulk data: from then on,
//! reads fill the session's own fixed-size segments, and bulk PSH bodies reach the streams as
//! shared slices of them, so received data is copied only by the kernel and by the
//! application's `read`.
//!
//! A segment is reused (without being zeroed again) once every body sliced from it has been read.
//! Memory stays bounded however slowly the application reads: at most [`SLICED_SEGMENTS`]
//! segments lend slices, and while all of them are held, reads go into one more segment whose
//! bodies are copied out, as small bodies always are (a 64-byte message must not hold on to a
//! whole segment), and as the bodies of quiet reads are. Either way the session counts each
//! queued body's length against its receive buffer.
//!
//! A second after the latest long read, on a timer (the connection need not carry another byte),
//! the connection is quiet again: the segments go back to the allocator, each as soon as no body
//! holds it (checked once a second while one does).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::mem;
use std::ops::Range;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use async_io::Timer;
use bytes::{Bytes, BytesMut};
use futures_io::AsyncRead;
use futures_lite::future;

use crate::frame::{FrameIter, Framing, ProtocolError};

/// Bytes one busy read may fill: room for several full frames.
const SEGMENT_LEN: usize = 256 << 10;
/// Segments whose bodies are handed out as slices.
const SLICED_SEGMENTS: usize = 4;
/// The segment read into while all the others are held: its bodies are always copied, so it is
/// always free again by the next read.
const COPIED_SEGMENT: usize = SLICED_SEGMENTS;
/// Where a quiet read's bytes are kept (after the partial frame before them), in an allocation
/// of just their length: its bodies are copied too, so it is freed once it is decoded.
const QUIET_BYTES: usize = SLICED_SEGMENTS + 1;
/// PSH bodies shorter than this are copied out of any segment.
const MIN_SLICED_BODY: usize = 4 << 10;
/// Reads shorter than this are short: the connection carries messages rather than bulk data
/// just now, and has probably nothing more to read yet.
pub(crate) const SHORT_READ: usize = 4 << 10;
/// The size of each thread's scratch buffer, the most a quiet read returns: a read that fills it
/// ends the quiet. (Small enough that a server's threads hardly notice it, large enough that a
/// quiet read is a few messages or a whole frame.)
const SCRATCH_LEN: usize = 64 << 10;
/// After this long without a long read, the connection is quiet and its segments are freed.
/// (Freeing them at the first short read would make bulk data that follows a message pay for
/// new segments: the page faults of 256 KiB doubled the p99 round trip of messages sent beside
/// bulk data.)
const QUIET_AFTER: Duration = Duration::from_secs(1);

thread_local! {
    /// The scratch buffer quiet reads on this thread borrow for the length of one poll.
    static SCRATCH: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
}

/// Runs `f` on this thread's scratch buffer (a fresh one if it is in use further up the stack,
/// which only a connection whose `poll_read` drives another session could cause).
fn with_scratch<T>(f: impl FnOnce(&mut [u8]) -> T) -> T {
    let mut scratch = SCRATCH
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_else(|| vec![0; SCRATCH_LEN].into_boxed_slice());
    let result = f(&mut scratch);
    // Fails only while the thread is exiting: the buffer is freed instead.
    let _ = SCRATCH.try_with(|cell| cell.set(Some(scratch)));
    result
}

/// Received bytes, in segments, and the part of them not yet decoded.
pub(crate) struct ReadBuffer {
    /// Each segment's whole length (all of it initialized), or empty while not allocated; then
    /// the bytes of the latest quiet read, at [`QUIET_BYTES`].
    segments: [Bytes; SLICED_SEGMENTS + 2],
    /// Received bytes not yet decoded (the start of a frame): which segment, and where.
    pending: Option<(usize, Range<usize>)>,
    /// When the latest long read ended, while the connection is busy; `None` while it is quiet.
    last_long_read: Option<Instant>,
    /// While quiet: when to look again for segments that bodies held at the last look.
    next_check: Option<Instant>,
    /// Fires at `release_due`, or earlier: the deadline moves with every long read, and moving
    /// the timer costs a syscall, so a timer that fires early is set again rather than moved.
    timer: Timer,
    /// When `timer` is set to fire, if it is.
    armed: Option<Instant>,
}

impl ReadBuffer {
    pub(crate) fn new() -> Self {
        ReadBuffer {
            segments: Default::default(),
            pending: None,
            last_long_read: None,
            next_check: None,
            timer: Timer::never(),
            armed: None,
        }
    }

    /// Received bytes not yet decoded.
    pub(crate) fn pending(&self) -> &[u8] {
        self.pending
            .as_ref()
            .map_or(&[], |(index, range)| &self.segments[*index][range.clone()])
    }

    /// Reads once from `read`, after the bytes still pending; the number of bytes read (0 at the
    /// end of the connection). While the read waits, segments are freed when they are due.
    pub(crate) async fn fill<R: AsyncRead + Unpin>(&mut self, read: &mut R) -> io::Result<usize> {
        future::poll_fn(|cx| self.poll_fill(cx, read)).await
    }

    fn poll_fill<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        read: &mut R,
    ) -> Poll<io::Result<usize>> {
        let polled = if self.last_long_read.is_some() {
            self.poll_read_segment(cx, read)
        } else {
            self.poll_read_quiet(cx, read)
        };
        let Poll::Ready(result) = polled else {
            self.poll_release(cx);
            return Poll::Pending;
        };
        let read = *result.as_ref().unwrap_or(&0);
        let now = Instant::now();
        match self.last_long_read {
            Some(_) if read >= SHORT_READ => self.last_long_read = Some(now),
            Some(last) if now.duration_since(last) >= QUIET_AFTER => self.release(now),
            Some(_) => {}
            None if read == SCRATCH_LEN => self.last_long_read = Some(now),
            None => {}
        }
        Poll::Ready(result)
    }

    /// A busy read: into a free segment, after the pending bytes.
    fn poll_read_segment<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        read: &mut R,
    ) -> Poll<io::Result<usize>> {
        let index = self.free_segment();
        let mut segment = self.take_for_writing(index);
        let carried = self.move_pending_to_front(&mut segment, index);
        let polled = Pin::new(read).poll_read(cx, &mut segment[carried..]);
        let got = match &polled {
            Poll::Ready(Ok(n)) => *n,
            _ => 0,
        };
        let filled = carried + got;
        // Pending or not, the pending bytes are now at the front of this segment.
        self.segments[index] = segment.freeze();
        self.pending = (filled > 0).then_some((index, 0..filled));
        polled
    }

    /// A quiet read: into this thread's scratch buffer, keeping only the bytes read.
    fn poll_read_quiet<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        read: &mut R,
    ) -> Poll<io::Result<usize>> {
        with_scratch(|scratch| {
            let n = ready!(Pin::new(read).poll_read(cx, scratch))?;
            if n > 0 {
                let pending = self.pending();
                let mut bytes = BytesMut::with_capacity(pending.len() + n);
                bytes.extend_from_slice(pending);
                bytes.extend_from_slice(&scratch[..n]);
                let len = bytes.len();
                // The pending bytes may have been the previous quiet read's: replaced here.
                self.segments[QUIET_BYTES] = bytes.freeze();
                self.pending = Some((QUIET_BYTES, 0..len));
            }
            Poll::Ready(Ok(n))
        })
    }

    /// When there may be memory to give back: a second after the latest long read while busy;
    /// while quiet, at the next look for segments still held, if any are.
    fn release_due(&self) -> Option<Instant> {
        match self.last_long_read {
            Some(last) => last.checked_add(QUIET_AFTER),
            None => self.next_check,
        }
    }

    /// Frees what is due, and sets the timer (with `cx`'s waker) for what is not yet.
    fn poll_release(&mut self, cx: &mut Context<'_>) {
        loop {
            let Some(due) = self.release_due() else {
                if self.armed.take().is_some() {
                    // Nothing left to free: an idle session is not woken.
                    self.timer = Timer::never();
                }
                return;
            };
            let now = Instant::now();
            if now >= due {
                self.release(now);
                continue;
            }
            if self.armed.is_none_or(|armed| armed > due) {
                self.timer.set_at(due);
                self.armed = Some(due);
            }
            if Pin::new(&mut self.timer).poll(cx).is_pending() {
                return;
            }
            self.armed = None;
        }
    }

    /// The connection is quiet: frees every segment no body holds, and looks again in a second
    /// if bodies hold some. The pending bytes (the start of a frame) move to an allocation of
    /// their own.
    fn release(&mut self, now: Instant) {
        self.last_long_read = None;
        if let Some((index, range)) = &mut self.pending {
            if *index != QUIET_BYTES {
                self.segments[QUIET_BYTES] =
                    Bytes::copy_from_slice(&self.segments[*index][range.clone()]);
                *range = 0..range.len();
                *index = QUIET_BYTES;
            }
        }
        let mut held = false;
        for segment in &mut self.segments[..QUIET_BYTES] {
            if segment.is_unique() {
                *segment = Bytes::new();
            }
            held |= !segment.is_empty();
        }
        self.next_check = held.then(|| now + QUIET_AFTER);
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
            F::carries_data(&header) && (*index >= COPIED_SEGMENT || body.len() < MIN_SLICED_BODY);
        let body = if copy {
            Bytes::copy_from_slice(body)
        } else {
            // Other frames' bodies are read and dropped before the session returns.
            let start = range.start + F::HEADER_LEN;
            segment.slice(start..start + body.len())
        };
        range.start += frames.consumed();
        self.consumed_pending();
        Ok(Some((header, body)))
    }

    /// Decodes the next header of `framing` in the pending bytes, if a whole one is there, and
    /// consumes it without its body: the caller takes the body with [`ReadBuffer::take_body`],
    /// in pieces as it arrives (a yamux Data frame may be longer than a segment).
    pub(crate) fn next_header<F: Framing>(
        &mut self,
        framing: F,
    ) -> Result<Option<F::Header>, ProtocolError> {
        let Some((index, range)) = &mut self.pending else {
            return Ok(None);
        };
        let Some(head) = self.segments[*index][range.clone()].get(..F::HEADER_LEN) else {
            return Ok(None);
        };
        let header = framing.decode(head)?;
        range.start += F::HEADER_LEN;
        self.consumed_pending();
        Ok(Some(header))
    }

    /// Up to `max` bytes of a body whose header [`ReadBuffer::next_header`] consumed: as many
    /// as are pending, sliced or copied as [`ReadBuffer::next_frame`] does for data. `None`
    /// when nothing is pending.
    pub(crate) fn take_body(&mut self, max: usize) -> Option<Bytes> {
        let (index, range) = self.pending.as_mut()?;
        let len = range.len().min(max);
        if len == 0 {
            return None;
        }
        let piece = range.start..range.start + len;
        let segment = &self.segments[*index];
        let body = if *index >= COPIED_SEGMENT || len < MIN_SLICED_BODY {
            Bytes::copy_from_slice(&segment[piece])
        } else {
            segment.slice(piece)
        };
        range.start += len;
        self.consumed_pending();
        Some(body)
    }

    /// Forgets the pending range once it is all decoded.
    fn consumed_pending(&mut self) {
        let Some((index, range)) = &self.pending else {
            return;
        };
        if range.start == range.end {
            if *index == QUIET_BYTES {
                // Decoded, and no body holds it: an idle session keeps no bytes.
                self.segments[QUIET_BYTES] = Bytes::new();
            }
            self.pending = None;
        }
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
            if from == QUIET_BYTES {
                self.segments[QUIET_BYTES] = Bytes::new();
            }
        }
        len
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::future::{block_on, poll_once};

    use super::*;
    use crate::frame::{encode_frame, Command, Header, Protocol, SmuxFraming, HEADER_LEN};

    fn psh(id: u32, body: &[u8]) -> Vec<u8> {
        let mut frame = BytesMut::new();
        encode_frame(&mut frame, Command::Psh, id, body);
        frame.to_vec()
    }

    /// A buffer whose connection carries bulk data just now.
    fn busy() -> ReadBuffer {
        ReadBuffer {
            last_long_read: Some(Instant::now()),
            ..ReadBuffer::new()
        }
    }

    fn fill_from(buffer: &mut ReadBuffer, bytes: &[u8]) -> usize {
        block_on(buffer.fill(&mut &bytes[..])).unwrap()
    }

    /// A connection with nothing to read.
    struct Silent;

    impl AsyncRead for Silent {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
    }

    /// Polls a read of a connection that has nothing to read, once.
    fn wait_once(buffer: &mut ReadBuffer) {
        assert!(block_on(poll_once(buffer.fill(&mut Silent))).is_none());
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

    fn allocated(buffer: &ReadBuffer) -> usize {
        buffer.segments.iter().filter(|s| !s.is_empty()).count()
    }

    #[test]
    fn quiet_reads_keep_only_the_bytes_read_and_nothing_once_they_are_decoded() {
        let mut buffer = ReadBuffer::new();
        let big = vec![7; 40_000];
        let wire = [psh(1, b"hello"), psh(3, &big), psh(5, b"partial")].concat();
        let cut = wire.len() - 3;
        assert_eq!(fill_from(&mut buffer, &wire[..cut]), cut);
        assert_eq!(
            buffer.segments[QUIET_BYTES].len(),
            cut,
            "not just the bytes read"
        );
        let got = frames(&mut buffer);
        assert_eq!(got.len(), 2);
        assert_eq!((&got[0].1[..], &got[1].1[..]), (&b"hello"[..], &big[..]));
        assert!(
            !lies_in(&got[1].1, &segment_range(&buffer, QUIET_BYTES)),
            "a quiet read's body holds the read"
        );
        assert_eq!(buffer.pending().len(), HEADER_LEN + 4);
        fill_from(&mut buffer, &wire[cut..]);
        assert_eq!(frames(&mut buffer)[0].1, &b"partial"[..]);
        assert_eq!(allocated(&buffer), 0, "an idle connection holds bytes");
        assert_eq!(buffer.last_long_read, None);
        // Nothing to free, so no timer.
        wait_once(&mut buffer);
        assert_eq!(buffer.armed, None);
    }

    #[test]
    fn a_read_that_fills_the_scratch_buffer_makes_the_connection_busy() {
        let wire: Vec<u8> = (0..3).flat_map(|_| psh(1, &[4; 60_000])).collect();
        let mut buffer = ReadBuffer::new();
        assert_eq!(fill_from(&mut buffer, &wire), SCRATCH_LEN);
        assert!(buffer.last_long_read.is_some());
        let first = frames(&mut buffer);
        assert_eq!(first.len(), 1);
        // The rest goes into a segment, after the partial frame, which no longer needs the
        // quiet read's bytes.
        fill_from(&mut buffer, &wire[SCRATCH_LEN..]);
        assert!(buffer.segments[QUIET_BYTES].is_empty());
        let rest = frames(&mut buffer);
        assert_eq!(rest.len(), 2);
        assert!(rest.iter().all(|(_, body)| body[..] == [4; 60_000]));
        assert!(lies_in(&rest[1].1, &segment_range(&buffer, 0)));
    }

    #[test]
    fn bulk_bodies_are_slices_of_the_segment_and_small_ones_copies() {
        let mut buffer = busy();
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
        let mut buffer = busy();
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
        let mut buffer = busy();
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
        let mut buffer = busy();
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
    fn a_second_after_the_last_long_read_the_segments_are_freed_as_bodies_let_go() {
        let wire = psh(1, &[3; 60_000]);
        let mut buffer = busy();
        let mut unread = Vec::new();
        for _ in 0..3 {
            fill_from(&mut buffer, &wire);
            unread.extend(frames(&mut buffer));
        }
        assert_eq!(allocated(&buffer), 3);
        let held = unread.pop().unwrap(); // the body in segment 2
        drop(unread);
        // A message between bulk reads frees nothing: the bulk data goes on.
        fill_from(&mut buffer, &psh(1, b"a message"));
        assert_eq!(frames(&mut buffer)[0].1, &b"a message"[..]);
        assert_eq!(allocated(&buffer), 3);
        // Half a frame arrives, then nothing: while the read waits, the timer is set.
        fill_from(&mut buffer, &psh(1, b"and half of another")[..12]);
        wait_once(&mut buffer);
        assert_eq!(allocated(&buffer), 3);
        assert!(buffer.armed.is_some());
        // A second after the last long read, the waiting read frees the free segments.
        buffer.last_long_read = buffer.last_long_read.map(|t| t - QUIET_AFTER);
        wait_once(&mut buffer);
        assert_eq!(buffer.last_long_read, None, "not quiet");
        assert_eq!(
            allocated(&buffer),
            2,
            "segment 2 (held) and the partial frame remain"
        );
        assert_eq!(buffer.segments[QUIET_BYTES].len(), 12);
        assert!(buffer.armed.is_some(), "no look again for the held segment");
        // The held segment goes at the next look after its body is read.
        wait_once(&mut buffer);
        assert_eq!(allocated(&buffer), 2, "freed too early");
        assert_eq!(held.1, vec![3; 60_000]);
        drop(held);
        buffer.next_check = buffer.next_check.map(|t| t - QUIET_AFTER);
        wait_once(&mut buffer);
        assert_eq!(allocated(&buffer), 1);
        assert_eq!((buffer.next_check, buffer.armed), (None, None));
        // The rest of the frame completes it.
        fill_from(&mut buffer, &psh(1, b"and half of another")[12..]);
        assert_eq!(frames(&mut buffer)[0].1, &b"and half of another"[..]);
        assert_eq!(allocated(&buffer), 0);
    }

    #[test]
    fn a_short_read_a_second_after_the_last_long_one_frees_the_segments() {
        let mut buffer = busy();
        fill_from(&mut buffer, &psh(1, &[3; 60_000]));
        drop(frames(&mut buffer));
        buffer.last_long_read = buffer.last_long_read.map(|t| t - QUIET_AFTER);
        fill_from(&mut buffer, &psh(1, b"quiet now"));
        assert_eq!(frames(&mut buffer)[0].1, &b"quiet now"[..]);
        assert_eq!(buffer.last_long_read, None);
        assert_eq!(allocated(&buffer), 0);
    }

    #[test]
    fn unread_bodies_hold_a_bounded_number_of_segments() {
        let wire = psh(1, &[5; 60_000]);
        let mut buffer = busy();
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
