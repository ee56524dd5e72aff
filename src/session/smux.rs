//! What the session does differently in the smux dialects (the rules on the wire are in
//! [`crate::wire::smux`]): PSH accounting, version 2's byte windows (UPD frames), the session
//! receive budget that stops the reader, and the keepalive NOP.

use super::*;
use crate::wire::smux::send_allowance;

/// smux v2's cumulative byte counts of one stream, all mod 2^32 as on the wire.
#[derive(Debug, Default)]
pub(super) struct ByteCounts {
    /// PSH bytes we sent.
    pub(super) sent: u32,
    /// PSH bytes received (discarded ones too).
    pub(super) received: u32,
    /// The peer's consumed count in its latest UPD.
    peer_consumed: u32,
    /// Bytes the application read (and bytes discarded unread, as if read).
    pub(super) read: u32,
    /// `read` as our latest UPD told it.
    pub(super) read_told: u32,
    /// The window our latest UPD told (0: none sent yet).
    pub(super) window_told: u32,
    /// The peer's FIN has arrived. Tracked apart from the receive state, because after our
    /// own abort (or refusal) the peer may still be writing: the entry stays, discarding and
    /// acknowledging, until this FIN (see [`StreamState::remote_done`]).
    pub(super) peer_fin: bool,
    /// Since when (the first timer run that saw it) our writer has waited on a closed window
    /// after the peer's FIN with no UPD since (see [`Session::fail_stalled_writes`]).
    pub(super) stalled_since: Option<Instant>,
    /// yamux: a stream we opened whose ACK has not come (see `session/yamux.rs`).
    pub(super) awaiting_ack: bool,
    /// yamux: the application accepted the stream and its ACK is still to go.
    pub(super) ack_owed: bool,
}

impl ByteCounts {
    /// The bytes of the session's receive budget the stream may still take: what it holds
    /// unread plus what the peer may still send, as our latest UPD allowed (or the window the
    /// peer assumes before any).
    fn committed(&self) -> u32 {
        if self.peer_fin {
            return self.received.wrapping_sub(self.read);
        }
        let window = match self.window_told {
            0 => INITIAL_PEER_WINDOW,
            told => told,
        };
        window.saturating_sub(self.read.wrapping_sub(self.read_told))
    }
}

impl StreamState {
    /// Whether our writer waits on a closed version-2 window after the peer's FIN: only a UPD
    /// can move it on, and a Go peer that closed the stream never sends one.
    pub(super) fn stalled_after_fin(&self) -> bool {
        self.bytes.as_deref().is_some_and(|counts| counts.peer_fin)
            && self.send_credits == 0
            && !self.send_buf.is_empty()
            && matches!(self.send, SendState::Open | SendState::FinQueued)
    }
}

/// The window, in bytes, that a version-2 stream announces while its sender interleaves it
/// with other streams' messages: the bytes of picomux's 10 interleaved frames from a smolmux
/// sender (quarter frames), so that a message queues behind as little as in picomux mode.
pub(super) const INTERLEAVED_WINDOW: u32 =
    INITIAL_CREDITS * (MAX_BODY / INTERLEAVED_FRAME_DIVISOR) as u32;

/// What a data frame received in a byte-window dialect (smux v2, yamux) says of its sender's
/// pattern (see [`Session::classify_data_frame`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DataFrameKind {
    /// At least half the largest frame received: the sender sends bulk as such.
    Full,
    /// Small, right after a frame of another stream, and not the stream's first, on a path
    /// too short to pace: the sender interleaves this stream with another's messages, in the
    /// smaller frames a smolmux sender uses for that.
    Interleaved,
    /// Any other small frame: a stream's first, a write's short tail, what is left of a
    /// window, a writer that writes little at a time. Says nothing.
    Other,
}

impl Session {
    /// Tells a data frame of `len` bytes on stream `id` apart, as picomux mode reads its
    /// frames (see `Session::on_psh`): a sender that interleaves a stream with another's
    /// messages wants few bytes in flight ahead of them, and its receiver then announces the
    /// smaller [`INTERLEAVED_WINDOW`]; a full frame means it no longer does. Small frames
    /// alone are not enough: one stream's small frames in a row (an echo or a proxy writing
    /// what it reads, a bulk sender filling what is left of its window) would shrink the
    /// window of a stream that interleaves with nothing, and a peer that writes all before it
    /// reads could then wait on us while we wait on it. Nor is a stream's first frame (its
    /// writer may have queued little yet) after another stream's proof of anything. On a path
    /// long enough to pace (yamux measures it; smux has no PING), a smolmux peer paces instead
    /// of interleaving, so no frame there is taken for interleaving.
    pub(super) fn classify_data_frame(&mut self, id: u32, len: usize) -> DataFrameKind {
        self.largest_psh_received = self.largest_psh_received.max(len);
        let previous = std::mem::replace(&mut self.last_data_stream, id);
        let first = self
            .streams
            .get(&id)
            .and_then(|stream| stream.bytes.as_deref())
            .is_none_or(|counts| counts.received == 0);
        if len * 2 >= self.largest_psh_received {
            DataFrameKind::Full
        } else if previous != id && !first && !self.paces_path() {
            DataFrameKind::Interleaved
        } else {
            DataFrameKind::Other
        }
    }

    /// A smux PSH. Data for a stream we do not know (refused, or closed and forgotten) or
    /// that we aborted is discarded, since smux has no reset: an abort is our FIN plus this.
    pub(super) fn on_smux_psh(&mut self, id: u32, body: Bytes) -> Result<(), ProtocolError> {
        if body.is_empty() {
            return Ok(()); // Go skips empty PSH frames too
        }
        let limit = self.smux_receive_limit();
        let kind = self.classify_data_frame(id, body.len());
        let full_window = self.smux_window();
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        let len = body.len() as u32;
        let mut window_changed = false;
        // Version 2 (the only one with byte counts).
        if let Some(counts) = stream.bytes.as_deref_mut() {
            counts.received = counts.received.wrapping_add(len);
            // Go's receiver never checks its windows; ours must, or one stream could hold the
            // whole session budget. What the peer may have in flight counts from the latest
            // consumed count we told it (it may only have heard an older one: it has less).
            let unacknowledged = counts.received.wrapping_sub(counts.read_told);
            if unacknowledged > limit {
                return Err(ProtocolError(format!(
                    "PSH on stream {id} beyond its window: {unacknowledged} bytes sent since \
                     the latest UPD, which allows {limit}"
                )));
            }
            let window = match kind {
                DataFrameKind::Interleaved => INTERLEAVED_WINDOW.min(full_window),
                DataFrameKind::Other => stream.window,
                DataFrameKind::Full => full_window,
            };
            // Told at once (a smaller window only stops the sender sooner: the check above
            // allows the largest).
            window_changed = window != stream.window;
            stream.window = window;
        }
        match stream.recv {
            RecvState::Finished => {
                return Err(ProtocolError(format!("PSH on stream {id} after its FIN")));
            }
            RecvState::Reset(_) => {}
            RecvState::Open if !stream.handles.reader_dropped() => {
                self.recv_buffered += body.len();
                stream.recv_queue.push_back(body);
                self.wake.extend(stream.read_waker.take());
                if window_changed {
                    self.consider_upd(id);
                }
                return Ok(());
            }
            RecvState::Open => {}
        }
        // Nobody will read it: count it as read, so a version-2 sender is not left waiting.
        stream.count_read(body.len());
        self.consider_upd(id);
        Ok(())
    }

    /// Refuses stream `id` of a version-2 peer, while the session is open and the table has
    /// room, with an entry kept until the peer's FIN: it sends our FIN, then discards what
    /// arrives and acknowledges it with UPDs, so the opener's writes complete instead of
    /// waiting for a window nobody grants. The entry counts against `max_streams`, so memory
    /// stays bounded; without room the refusal is a plain FIN (and a smolmux opener's writes
    /// end by its stall rule, see [`Session::fail_stalled_writes`]). Returns whether it did.
    pub(super) fn keep_refused_smux_stream(&mut self, id: u32, why: &str) -> bool {
        // A yamux RST ends both directions: nothing is left to acknowledge.
        if self.dialect.flow() != Flow::ByteWindow
            || self.dialect.is_yamux()
            || !self.is_open()
            || self.streams.len() >= self.config.max_streams
        {
            return false;
        }
        let mut stream = self.new_stream(None);
        stream.handles = Handles::Dropped;
        self.streams.insert(id, stream);
        self.reset_stream(id, Some(why), why);
        true
    }

    /// Most bytes a version-2 peer may send on a stream beyond the consumed count we told it:
    /// our window, or the larger window a sender assumes before our first UPD arrives.
    fn smux_receive_limit(&self) -> u32 {
        self.smux_window().max(INITIAL_PEER_WINDOW)
    }

    /// The window our UPDs announce: `stream_receive_buffer`, at most `i32::MAX` (a Go sender
    /// reads the window as an i32: a larger one would stop it).
    pub(super) fn smux_window(&self) -> u32 {
        u32::try_from(self.config.stream_receive_buffer)
            .unwrap_or(u32::MAX)
            .min(i32::MAX as u32)
    }

    /// The window a version-2 stream's UPD may tell now: its chosen `window` (see
    /// [`Session::on_smux_psh`]), within an even share of half of `session_receive_buffer`
    /// among `id` and the open streams read lately ([`Session::read_lately`]: an idle message
    /// stream or a stalled reader leaves its part to the busy ones, as in picomux mode's
    /// `window_share`) and within what the other streams' windows leave of that half,
    /// but never below the 262,144 bytes a sender assumes before any UPD anyway. Windows of
    /// readers that stall thus cannot fill the budget that stops the reader (smux's
    /// backpressure, which stops every stream) unless the floors do it: at the defaults, some
    /// 128 streams at 256 KiB each for the other half.
    pub(super) fn smux_window_limit(&self, id: u32, window: u32) -> u32 {
        let floor = INITIAL_PEER_WINDOW;
        let half = self.config.session_receive_buffer / 2;
        if half / self.streams.len().max(1) <= floor as usize {
            // Many streams open: hold every window to the floor without looking at each (a
            // cutoff on the safe side, which bounds the scans below to 128 streams at the
            // defaults; a lone busy stream among many idle ones gets the floor, as before).
            return floor.min(window);
        }
        let wanting = self
            .streams
            .iter()
            .filter(|(other, stream)| {
                **other == id
                    || (matches!(stream.recv, RecvState::Open) && self.read_lately(stream))
            })
            .count();
        let share = half / wanting.max(1);
        let others: usize = self
            .streams
            .iter()
            .filter(|(other, _)| **other != id)
            .filter_map(|(_, stream)| Some(stream.bytes.as_deref()?.committed() as usize))
            .sum();
        let allowed = share.min(half.saturating_sub(others));
        u32::try_from(allowed)
            .unwrap_or(u32::MAX)
            .max(floor)
            .min(window)
    }

    /// A version-2 UPD from the peer: how much of stream `id` it has read, and its window.
    pub(super) fn on_upd(&mut self, id: u32, upd: Upd) -> Result<(), ProtocolError> {
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(()); // a stream we have forgotten (Go ignores these too)
        };
        let Some(counts) = stream.bytes.as_deref_mut() else {
            return Ok(()); // not version 2: UPD cannot have been decoded
        };
        stream.send_credits = send_allowance(id, counts.sent, counts.peer_consumed, upd)?;
        counts.peer_consumed = upd.consumed;
        // The peer is still granting: any stall counts afresh from here.
        counts.stalled_since = None;
        self.schedule_data(id);
        self.watch_stall(id);
        Ok(())
    }

    /// Stream `id` may have just begun to wait on a closed window after the peer's FIN: the
    /// timer must run to start its clock (see [`Session::fail_stalled_writes`]).
    pub(super) fn watch_stall(&mut self, id: u32) {
        let unclocked = self.streams.get(&id).is_some_and(|stream| {
            stream.stalled_after_fin()
                && stream
                    .bytes
                    .as_deref()
                    .is_some_and(|counts| counts.stalled_since.is_none())
        });
        if unclocked {
            self.wake.extend(self.timer_waker.take());
        }
    }

    /// When the earliest version-2 stream stalled after the peer's FIN is due to fail.
    pub(super) fn stall_deadline(&self) -> Option<Instant> {
        if self.dialect.flow() != Flow::ByteWindow {
            return None;
        }
        self.streams
            .values()
            .filter_map(|stream| stream.bytes.as_deref()?.stalled_since)
            .min()
            .and_then(|since| since.checked_add(self.liveness.timeout))
    }

    /// smux v2's answer to a peer that closed a stream and forgot it (Go smux's
    /// `Stream.Close`): once its FIN has come and our writer has waited on a closed window
    /// with no UPD for `ping_timeout`, the bytes queued are dropped, our FIN goes, and the
    /// writes fail with `BrokenPipe`. A smolmux peer keeps acknowledging after its FIN (a
    /// half-closed echo goes on), so only an application that stops reading for that long
    /// after half-closing is cut off. Go's own writer gives up at once on the FIN, which would
    /// break such an echo. Starts the clock of streams that just stalled, too.
    pub(super) fn fail_stalled_writes(&mut self, now: Instant) {
        if self.dialect.flow() != Flow::ByteWindow {
            return;
        }
        let timeout = self.liveness.timeout;
        let mut expired = Vec::new();
        for (id, stream) in self.streams.iter_mut() {
            let stalled = stream.stalled_after_fin();
            let Some(counts) = stream.bytes.as_deref_mut() else {
                continue;
            };
            if !stalled {
                counts.stalled_since = None;
                continue;
            }
            let since = *counts.stalled_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= timeout {
                expired.push(*id);
            }
        }
        for id in expired {
            let Some(stream) = self.streams.get_mut(&id) else {
                continue;
            };
            tracing::debug!(id, "smux peer stopped granting window after its FIN");
            let lost = stream.send_buf.len();
            self.send_buffered -= lost;
            stream.send_buf.clear();
            stream.send = SendState::StallQueued(lost);
            if let Some(counts) = stream.bytes.as_deref_mut() {
                counts.stalled_since = None;
            }
            self.wake.extend(stream.write_waker.take());
            self.schedule_data(id);
        }
    }

    /// Queues a UPD for stream `id` when one is due, as Go's receiver does: at the first read
    /// (so the sender learns our real window, not its 256 KiB guess), then each time half the
    /// window has been read since the latest.
    pub(super) fn consider_upd(&mut self, id: u32) {
        if self.dialect.is_yamux() {
            return self.consider_yamux_update(id);
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        // Before our SYN is out the peer cannot know the stream; after its FIN it sends no more.
        if stream.grant_scheduled
            || stream.syn.is_some()
            || matches!(stream.recv, RecvState::Finished)
        {
            return;
        }
        let Some(counts) = stream.bytes.as_deref() else {
            return;
        };
        let unreported = counts.read.wrapping_sub(counts.read_told);
        let due = match counts.window_told {
            0 => unreported > 0, // the first UPD, at the first read
            // A change of the chosen window is told at once (see `Session::on_smux_psh`);
            // what the budget allows (at least the 262,144-byte floor, more than the
            // interleaving window) moves with the half-window UPDs.
            told => {
                told > stream.window
                    || (told < INITIAL_PEER_WINDOW && stream.window > told)
                    || unreported >= told / 2
            }
        };
        if !due {
            return;
        }
        stream.grant_scheduled = true;
        self.grant_queue.push_back(id);
        self.wake_writer();
    }

    /// Encodes the UPD queued for stream `id`, unless it is no longer wanted.
    pub(super) fn encode_upd(&mut self, id: u32, out: &mut Transmit) -> bool {
        if self.dialect.is_yamux() {
            return self.encode_yamux_update(id, out);
        }
        let protocol = self.dialect.protocol;
        let Some(stream) = self.streams.get_mut(&id) else {
            return false;
        };
        stream.grant_scheduled = false;
        if stream.bytes.is_none() || matches!(stream.recv, RecvState::Finished) {
            return false;
        }
        let chosen = stream.window;
        let window = self.smux_window_limit(id, chosen);
        let Some(counts) = self
            .streams
            .get_mut(&id)
            .and_then(|stream| stream.bytes.as_deref_mut())
        else {
            return false;
        };
        counts.read_told = counts.read;
        counts.window_told = window;
        let upd = Upd {
            consumed: counts.read,
            window,
        };
        tracing::trace!(id, consumed = upd.consumed, window, "UPD sent");
        out.encode(|b| encode_frame_as(b, protocol, Command::Upd, id, &upd.to_bytes()));
        true
    }

    /// smux: whether unread data fills `session_receive_buffer`, so that the reader stops until
    /// the application reads (smux's session-wide backpressure: a smux sender expects it, and
    /// version 1 has nothing else). picomux and yamux reset streams instead (see
    /// [`Session::enforce_receive_budget`]).
    pub(super) fn receive_budget_full(&self) -> bool {
        !self.dialect.is_picomux()
            && !self.dialect.is_yamux()
            && self.recv_buffered >= self.config.session_receive_buffer
    }

    /// smux: starts the keepalive schedule at the session's first timer run (the first NOP
    /// one interval later), and the timeout's count, if nothing has arrived yet.
    pub(super) fn start_keepalive(&mut self, now: Instant) {
        let started = self.liveness.next_ping_at.is_some() || self.liveness.ping_wanted;
        if self.dialect.pings() || started {
            return;
        }
        self.liveness.last_arrival.get_or_insert(now);
        self.liveness.next_ping_at = self
            .liveness
            .interval
            .and_then(|interval| now.checked_add(interval));
    }

    /// Encodes smux's keepalive, a NOP on stream 0, and schedules the next.
    pub(super) fn encode_keepalive(&mut self, out: &mut Transmit, now: Instant) {
        self.liveness.ping_wanted = false;
        self.liveness.next_ping_at = self
            .liveness
            .interval
            .and_then(|interval| now.checked_add(interval));
        tracing::trace!("NOP sent");
        let protocol = self.dialect.protocol;
        out.encode(|b| encode_frame_as(b, protocol, Command::Nop, 0, b""));
        self.wake.extend(self.timer_waker.take());
    }
}
