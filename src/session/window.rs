//! Receive-window auto-tuning: a stream's window grows while its application keeps up with a
//! long path, within the stream's share of `session_receive_buffer`, and shrinks back when the
//! stream is read slowly. Windows count frames (the protocol's credits); a grown window counts
//! them at the size the stream receives, so that it holds the bytes the path needs.

use super::*;

/// In how many grants a stream's window is given back as it is read (a MORE in picomux mode, a
/// Window Update in yamux mode): halves while it is at most `base` (`stream_receive_buffer`),
/// quarters once the tuner grew it. What is read but not yet granted back waits a round trip
/// or more on a long path, so a grown window granted back a quarter at a time needs only 4/3 of
/// the path's BDP to keep it full, not 2× (traced in yamux mode at 150 ms / 1 Gbit/s: with
/// halves, the 32 MiB ceiling held one stream to 99.7 MB/s, 0.81× of raw TCP).
pub(super) fn grant_batches(window: u32, base: u32) -> u32 {
    if window > base {
        4
    } else {
        2
    }
}

impl Session {
    /// Receive-window auto-tuning, as TCP and rust-yamux do it, called as a MORE for stream
    /// `id` is encoded (half its window was read since the previous one, a quarter once the
    /// window has grown: see [`Session::consider_grant`]). If that took less than two round
    /// trips, the window may be what limits the stream on this path: it doubles, up to `limit`
    /// (its share of the session budget). (With quarter batches a window under about 8× the
    /// path's BDP keeps growing, within that share: credit, not memory, while the application
    /// keeps reading; a stalled reader holds at most its window.) If it took more than eight,
    /// the application or the path is slower than the window: it halves, down to
    /// `stream_receive_buffer`. On a path of under a millisecond (loopback, a LAN) the window
    /// stays at `stream_receive_buffer`, which such a path never needs more than.
    ///
    /// `limit` counts full frames; see [`Session::window_in_frames`] for what a grown window
    /// may hold.
    pub(super) fn tune_window(&mut self, id: u32, limit: u32, now: Instant) {
        let rtt_ms = self.liveness.min_rtt.map_or(0, |rtt| rtt.as_millis());
        let rtt_ms = u32::try_from(rtt_ms).unwrap_or(u32::MAX);
        // The clock's zero means "no MORE yet".
        let now_ms = (now.saturating_duration_since(self.epoch).as_millis() as u16).max(1);
        let base = self.max_window;
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.granted_at != 0 && rtt_ms > 0 {
            let since = u32::from(now_ms.wrapping_sub(stream.granted_at));
            if since < rtt_ms.saturating_mul(2) {
                let limit = Session::frames_for(stream, limit);
                let grown = stream.window.saturating_mul(2).min(limit);
                stream.window = stream.window.max(grown);
            } else if since > rtt_ms.saturating_mul(8) {
                stream.window = (stream.window / 2).max(base);
            }
        }
        stream.granted_at = now_ms;
    }

    /// A limit of `limit` full frames, as frames of the size the stream receives, for a window
    /// the tuner grew: a 64 KiB write often leaves as two 32 KiB frames, and a window counted
    /// in full frames would then hold half the bytes the path needs. Frames under a quarter of
    /// the largest count as a quarter, so that the credits stay within four times the limit
    /// (and the unread bytes within `session_receive_buffer`, which
    /// [`Session::enforce_receive_budget`] holds whatever frames the peer sends). Windows at or
    /// below `stream_receive_buffer` count frames as they always did.
    pub(super) fn window_in_frames(&self, stream: &StreamState, limit: u32) -> u32 {
        if stream.window <= self.max_window {
            return limit;
        }
        Session::frames_for(stream, limit)
    }

    /// The frames stream `stream` commits beyond its floor, as full frames: the share of the
    /// excess budget it takes. A grown window's frames count at the size the stream receives
    /// (as in [`Session::window_in_frames`]), so that streams receiving half-full frames, as
    /// 64 KiB writes become, share the budget's bytes, not half of them.
    pub(super) fn excess_full_frames(&self, stream: &StreamState) -> u32 {
        let excess = stream.excess_frames();
        if stream.window <= self.max_window {
            return excess;
        }
        let frame_len = Session::received_frame_len(stream);
        let full = (excess as usize * frame_len).div_ceil(MAX_BODY);
        u32::try_from(full).unwrap_or(u32::MAX)
    }

    /// The length a grown window counts `stream`'s frames at: their average, rounded up to
    /// 256 bytes (so that full frames count as full), and at least a quarter of a full frame.
    fn received_frame_len(stream: &StreamState) -> usize {
        ((usize::from(stream.frame_len) + 1) << 8).clamp(MAX_BODY / 4, MAX_BODY)
    }

    fn frames_for(stream: &StreamState, limit: u32) -> u32 {
        let frame_len = Session::received_frame_len(stream);
        let frames = limit as usize * MAX_BODY / frame_len;
        u32::try_from(frames).unwrap_or(u32::MAX)
    }
}
