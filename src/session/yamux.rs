//! What the session does differently in the yamux dialect (the header rules are in
//! [`crate::wire::yamux`]; `/work/shared/YAMUX.md` has both implementations' behaviour).
//!
//! yamux's frames carry flags where the other dialects have commands, so a received header is
//! taken apart here into the session's events, in the order the flags mean: SYN opens the
//! stream ([`Session::on_syn`]), ACK accepts one of ours, a Window Update's delta grows the
//! send window, a Data frame's body goes to the stream, and only after the body FIN
//! half-closes ([`Session::on_fin`]) and RST resets (an abort whose reason the peer cannot
//! send). A Data body may be megabytes long (a Go sender writes up to the window it was
//! granted, more than a read segment holds): the driver hands it over in pieces
//! ([`Session::on_yamux_body`]), and the window is checked against the whole length when the
//! header arrives.
//!
//! Flow control reuses smux v2's byte counts ([`ByteCounts`]): yamux's receiver grants deltas
//! where smux's tells a cumulative count and a window, so we keep the limit the peer knows as
//! `read_told + window_told` (256 KiB before any update) and grant the difference when the
//! limit moves up; a yamux window never shrinks. Sending, a Window Update adds its delta to the
//! stream's credits (overflowing 2^32 - 1 is an error, as in rust-yamux).
//!
//! What yamux has and the others do not: the ACK of an accepted stream (sent when the
//! application accepts it, as Go does, so a full accept backlog makes the opener wait rather
//! than be reset), at most [`MAX_UNACKED_OPENS`] of our opens awaiting their ACK (further
//! opens wait, as in both implementations), Pings with an opaque value (we answer each on
//! stream 0 and never send a pong nobody asked for), and GoAway codes: 0 drains the session as
//! smolmux's GOAWAY does (the peer opens nothing more; existing streams finish), 1 and 2 end it
//! with an error naming the code.

use super::smux::{DataFrameKind, INTERLEAVED_WINDOW};
use super::*;
use crate::frame::{Flags, FrameType, GoAwayCode, YamuxHeader};

/// Most of our opens that may await the peer's ACK at once: both Go (`AcceptBacklog`) and
/// rust-yamux (`MAX_ACK_BACKLOG`) stop there, and a Go acceptor resets the SYNs past its
/// 256-stream backlog.
pub(super) const MAX_UNACKED_OPENS: u32 = 256;

/// Most Pings answered later than they came: past it the reader waits for the writer (as for
/// refusals), so a Ping flood costs bounded memory and every Ping still gets its pong.
pub(super) const MAX_OWED_PONGS: usize = 64;

/// The session's yamux state (left at its default in the other dialects).
#[derive(Debug, Default)]
pub(super) struct YamuxState {
    /// The opaque value of our next Ping (a counter, as Go's).
    next_ping: u32,
    /// The value of our Ping awaiting its pong.
    ping_out: Option<u32>,
    /// The values of the peer's Pings still to answer, oldest first.
    pongs_owed: VecDeque<u32>,
    /// Our opens that await the peer's ACK.
    unacked_opens: u32,
    /// The highest id the peer has opened (ids count up, so a higher one is new).
    highest_peer_id: Option<u32>,
}

impl YamuxState {
    /// Whether the reader must wait for the writer to send the pongs owed.
    pub(super) fn pongs_full(&self) -> bool {
        self.pongs_owed.len() >= MAX_OWED_PONGS
    }
}

/// Appends one body-less yamux frame (or a Data frame's header) to `out`.
fn encode(out: &mut Transmit, frame_type: FrameType, flags: Flags, stream_id: u32, length: u32) {
    let header = YamuxHeader {
        frame_type,
        flags,
        stream_id,
        length,
    };
    out.encode(|b| header.encode(b));
}

impl Session {
    /// A yamux header from the peer (for a Data frame, before its body): everything but FIN and
    /// RST, which [`Session::on_yamux_end`] handles after the body.
    pub(crate) fn on_yamux_header(
        &mut self,
        header: YamuxHeader,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        let id = header.stream_id;
        tracing::trace!(?header, "frame received");
        match header.frame_type {
            FrameType::Ping if header.flags.contains(Flags::SYN) => {
                self.yamux.pongs_owed.push_back(header.length);
                self.wake_writer();
                Ok(())
            }
            FrameType::Ping => {
                if self.yamux.ping_out == Some(header.length) {
                    self.yamux.ping_out = None;
                    self.on_pong(now);
                } else {
                    // Go ignores a pong it did not ask for too (rust-yamux ends the session).
                    tracing::debug!(value = header.length, "unsolicited yamux pong ignored");
                }
                Ok(())
            }
            FrameType::GoAway => match header.go_away_code() {
                Some(GoAwayCode::Normal) => {
                    self.on_goaway();
                    Ok(())
                }
                Some(code) => Err(ProtocolError(format!(
                    "the peer ended the session with GoAway({}: {})",
                    code.to_u32(),
                    match code {
                        GoAwayCode::ProtocolError => "protocol error",
                        _ => "internal error",
                    }
                ))),
                None => Err(ProtocolError("GoAway with an unknown code".into())),
            },
            FrameType::Data | FrameType::WindowUpdate => {
                if header.flags.contains(Flags::SYN) || self.is_sly_open(header) {
                    self.yamux.highest_peer_id = self.yamux.highest_peer_id.max(Some(id));
                    self.on_syn(id, b"")?;
                }
                if header.flags.contains(Flags::ACK) {
                    self.on_yamux_ack(id);
                }
                match header.frame_type {
                    FrameType::Data => self.on_yamux_data(id, header.length),
                    _ => self.on_window_update(id, header.length),
                }
            }
        }
    }

    /// Whether `header` opens a stream without SYN: rust-yamux closes a stream it opened
    /// before writing to it with a FIN that lacks the SYN (YAMUX.md §5; Go ignores it and the
    /// opener hangs). A FIN on an id of the peer's that is higher than any it opened can only
    /// be that: we take it as the open and the close.
    fn is_sly_open(&self, header: YamuxHeader) -> bool {
        let id = header.stream_id;
        header.flags.contains(Flags::FIN)
            && !header.flags.contains(Flags::RST)
            && self
                .yamux
                .highest_peer_id
                .is_none_or(|highest| id > highest)
            && self.dialect.check_peer_id(id).is_ok()
    }

    /// The peer accepted stream `id` of ours: one open less awaits its ACK.
    fn on_yamux_ack(&mut self, id: u32) {
        let Some(counts) = self
            .streams
            .get_mut(&id)
            .and_then(|stream| stream.bytes.as_deref_mut())
        else {
            return;
        };
        if std::mem::take(&mut counts.awaiting_ack) {
            self.yamux.unacked_opens -= 1;
            self.notify_open = true;
        }
    }

    /// A Window Update's delta: more the peer lets us send on stream `id`.
    fn on_window_update(&mut self, id: u32, delta: u32) -> Result<(), ProtocolError> {
        if delta == 0 {
            return Ok(());
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(()); // a stream we have forgotten (both implementations ignore these)
        };
        stream.send_credits = stream.send_credits.checked_add(delta).ok_or_else(|| {
            ProtocolError(format!(
                "Window Update on stream {id} overflows the send window ({} + {delta} bytes \
                 is more than 2^32 - 1)",
                stream.send_credits
            ))
        })?;
        if let Some(counts) = stream.bytes.as_deref_mut() {
            // The peer is still granting: any stall counts afresh from here.
            counts.stalled_since = None;
        }
        self.schedule_data(id);
        self.watch_stall(id);
        Ok(())
    }

    /// A Data header announcing `len` bytes for stream `id`: they must fit the window we
    /// granted (checked now, before the body arrives), and count as received.
    fn on_yamux_data(&mut self, id: u32, len: u32) -> Result<(), ProtocolError> {
        // As in smux v2 (see `Session::classify_data_frame`). A yamux window cannot shrink,
        // so the smaller window takes hold once the peer has used what it was granted: we
        // grant nothing more until then.
        let kind = self.classify_data_frame(id, len as usize);
        let full_window = self.smux_window();
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(()); // refused or forgotten: the body is drained and dropped
        };
        let Some(counts) = stream.bytes.as_deref_mut() else {
            return Ok(());
        };
        if len == 0 {
            return Ok(());
        }
        if matches!(stream.recv, RecvState::Finished) {
            return Err(ProtocolError(format!("Data on stream {id} after its FIN")));
        }
        let in_flight = counts.received.wrapping_sub(counts.read_told);
        let window = counts.known_window();
        if u64::from(in_flight) + u64::from(len) > u64::from(window) {
            return Err(ProtocolError(format!(
                "Data on stream {id} overruns its receive window: {len} bytes, {} allowed",
                window.saturating_sub(in_flight)
            )));
        }
        counts.received = counts.received.wrapping_add(len);
        stream.window = match kind {
            DataFrameKind::Interleaved => INTERLEAVED_WINDOW.min(full_window),
            DataFrameKind::Other => stream.window,
            // A window the tuner grew stays grown (see `Session::tune_yamux_window`).
            DataFrameKind::Full => stream.window.max(full_window),
        };
        Ok(())
    }

    /// A piece of a Data body for stream `id` (the window was checked at its header).
    pub(crate) fn on_yamux_body(&mut self, id: u32, piece: Bytes) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if matches!(stream.recv, RecvState::Open) && !stream.handles.reader_dropped() {
            self.recv_buffered += piece.len();
            stream.recv_queue.push_back(piece);
            self.wake.extend(stream.read_waker.take());
            // The session budget's rule is picomux mode's: reset the stream read longest ago,
            // rather than stop reading (which would leave Pings and pongs unread too).
            self.enforce_receive_budget();
            return;
        }
        // Nobody will read it: count it as read, so the sender is not left waiting.
        stream.count_read(piece.len());
        self.consider_upd(id);
    }

    /// The end of a yamux frame (after a Data frame's body): its FIN or RST.
    pub(crate) fn on_yamux_end(&mut self, header: YamuxHeader) -> Result<(), ProtocolError> {
        let id = header.stream_id;
        let stream_frame = matches!(header.frame_type, FrameType::Data | FrameType::WindowUpdate);
        if stream_frame && header.flags.contains(Flags::RST) {
            let refused = self
                .streams
                .get(&id)
                .and_then(|stream| stream.bytes.as_deref())
                .is_some_and(|counts| counts.awaiting_ack);
            let reason = match refused {
                // Go resets the SYNs past its accept backlog, and after its GoAway.
                true => "stream refused by the peer (RST before its ACK)",
                false => "stream reset by the peer (RST)",
            };
            self.on_fin(id, reason.as_bytes())?;
        } else if stream_frame && header.flags.contains(Flags::FIN) {
            let again = self
                .streams
                .get(&id)
                .is_some_and(|stream| matches!(stream.recv, RecvState::Finished));
            if again {
                // Go ends its session for this too; a peer that repeats FIN lost count.
                return Err(ProtocolError(format!("second FIN on stream {id}")));
            }
            self.on_fin(id, b"")?;
        }
        if !self.is_open() {
            self.progress();
        }
        Ok(())
    }

    /// The application accepted stream `id`: its ACK goes out (with the window beyond the
    /// initial 256 KiB).
    pub(super) fn owe_yamux_ack(&mut self, id: u32) {
        if !self.dialect.is_yamux() {
            return;
        }
        if let Some(counts) = self
            .streams
            .get_mut(&id)
            .and_then(|stream| stream.bytes.as_deref_mut())
        {
            counts.ack_owed = true;
        }
        self.consider_upd(id);
    }

    /// Counts a stream we open as awaiting its ACK.
    pub(super) fn count_unacked_open(&mut self, id: u32) {
        if !self.dialect.is_yamux() {
            return;
        }
        if let Some(counts) = self
            .streams
            .get_mut(&id)
            .and_then(|stream| stream.bytes.as_deref_mut())
        {
            counts.awaiting_ack = true;
            self.yamux.unacked_opens += 1;
        }
    }

    /// A stream left the table: if it still awaited its ACK, another open may go.
    pub(super) fn forget_unacked(&mut self, stream: &StreamState) {
        if stream
            .bytes
            .as_deref()
            .is_some_and(|counts| counts.awaiting_ack)
        {
            self.yamux.unacked_opens -= 1;
            self.notify_open = true;
        }
    }

    /// Whether the un-ACKed opens leave room for another (always, outside yamux).
    pub(super) fn unacked_room(&self) -> bool {
        self.yamux.unacked_opens < MAX_UNACKED_OPENS
    }

    /// Queues a Window Update for stream `id` when one is due: its ACK is owed, or the limit
    /// the peer knows is half a window or more behind what we may grant (Go's and
    /// rust-yamux's rule; a quarter once the tuner grew the window).
    pub(super) fn consider_yamux_update(&mut self, id: u32) {
        let base = self.smux_window();
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.grant_scheduled || stream.syn.is_some() {
            return;
        }
        let Some(counts) = stream.bytes.as_deref() else {
            return;
        };
        let due = match stream.recv {
            RecvState::Reset(_) => false, // nothing follows an RST
            RecvState::Finished => counts.ack_owed,
            RecvState::Open => {
                let batch = window::grant_batches(stream.window, base);
                counts.ack_owed || counts.grantable(stream.window) >= stream.window / batch
            }
        };
        if !due {
            return;
        }
        stream.grant_scheduled = true;
        self.grant_queue.push_back(id);
        self.wake_writer();
    }

    /// Encodes the Window Update queued for stream `id` (with its ACK, if owed), unless it is
    /// no longer wanted.
    pub(super) fn encode_yamux_update(&mut self, id: u32, out: &mut Transmit) -> bool {
        let Some(stream) = self.streams.get_mut(&id) else {
            return false;
        };
        stream.grant_scheduled = false;
        let open = match stream.recv {
            RecvState::Reset(_) => return false,
            RecvState::Finished => false,
            RecvState::Open => true,
        };
        if open {
            self.tune_yamux_window(id, Instant::now());
        }
        let Some(chosen) = self.streams.get(&id).map(|stream| stream.window) else {
            return false;
        };
        let window = if open {
            self.smux_window_limit(id, chosen)
        } else {
            0
        };
        let Some(counts) = self
            .streams
            .get_mut(&id)
            .and_then(|stream| stream.bytes.as_deref_mut())
        else {
            return false;
        };
        let delta = counts.grantable(window);
        let ack = std::mem::take(&mut counts.ack_owed);
        if delta == 0 && !ack {
            return false;
        }
        if delta > 0 {
            // The peer's limit is now `read + window`.
            counts.read_told = counts.read;
            counts.window_told = window;
        }
        let flags = if ack { Flags::ACK } else { Flags::default() };
        tracing::trace!(id, delta, ack, "Window Update sent");
        encode(out, FrameType::WindowUpdate, flags, id, delta);
        true
    }

    /// Receive-window auto-tuning, as picomux mode's [`Session::tune_window`] does it in frames,
    /// here in bytes: called as a Window Update for stream `id` is encoded, which happens once
    /// half its window (a quarter once grown) has been read since the previous one (see
    /// [`Session::consider_yamux_update`]). If that took less than two round trips, the window
    /// may be what limits the stream on this path (with quarter updates, a window under about
    /// 8× the BDP, as in picomux mode's [`Session::tune_window`]): it doubles, up to half of
    /// `session_receive_buffer` (and the grant is still cut to the stream's share of it by
    /// [`Session::smux_window_limit`]). If it took more than eight, it halves, down to
    /// `stream_receive_buffer`. Paths under a millisecond (loopback, a LAN) keep
    /// `stream_receive_buffer`, and so does a window the interleaving rule shrank.
    pub(super) fn tune_yamux_window(&mut self, id: u32, now: Instant) {
        let rtt_ms = self.liveness.min_rtt.map_or(0, |rtt| rtt.as_millis());
        let rtt_ms = u32::try_from(rtt_ms).unwrap_or(u32::MAX);
        // The clock's zero means "no Window Update yet".
        let now_ms = (now.saturating_duration_since(self.epoch).as_millis() as u16).max(1);
        let base = self.smux_window();
        let ceiling = u32::try_from(self.config.session_receive_buffer / 2)
            .unwrap_or(u32::MAX)
            .min(i32::MAX as u32)
            .max(base);
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.granted_at != 0 && rtt_ms > 0 && stream.window >= base {
            let since = u32::from(now_ms.wrapping_sub(stream.granted_at));
            if since < rtt_ms.saturating_mul(2) {
                stream.window = stream.window.saturating_mul(2).min(ceiling);
            } else if since > rtt_ms.saturating_mul(8) {
                stream.window = (stream.window / 2).max(base);
            }
        }
        stream.granted_at = now_ms;
    }

    /// Encodes the first pong owed, if any.
    pub(super) fn encode_yamux_pong(&mut self, out: &mut Transmit) -> bool {
        let Some(value) = self.yamux.pongs_owed.pop_front() else {
            return false;
        };
        tracing::trace!(value, "pong sent");
        encode(out, FrameType::Ping, Flags::ACK, 0, value);
        self.wake_reader_if_room();
        true
    }

    /// Encodes our Ping, with the next opaque value.
    pub(super) fn encode_yamux_ping(&mut self, out: &mut Transmit, now: Instant) {
        self.liveness.ping_wanted = false;
        self.liveness.ping_sent_at = Some(now);
        self.pacer.on_ping_sent(now);
        let value = self.yamux.next_ping;
        self.yamux.next_ping = value.wrapping_add(1);
        self.yamux.ping_out = Some(value);
        tracing::trace!(value, "Ping sent");
        encode(out, FrameType::Ping, Flags::SYN, 0, value);
        self.wake.extend(self.timer_waker.take());
    }

    /// Encodes GoAway(0): we open and accept no more streams.
    pub(super) fn encode_yamux_goaway(out: &mut Transmit) {
        encode(
            out,
            FrameType::GoAway,
            Flags::default(),
            0,
            GoAwayCode::Normal.to_u32(),
        );
    }

    /// Encodes the refusal of a stream the peer opened: an RST on a Window Update.
    pub(super) fn encode_yamux_refusal(out: &mut Transmit, id: u32) {
        encode(out, FrameType::WindowUpdate, Flags::RST, id, 0);
    }

    /// The window the SYN of stream `id` grants, if its SYN is what it sends next in yamux.
    pub(super) fn yamux_syn_window(&self, id: u32) -> u32 {
        match self.streams.get(&id) {
            Some(stream) if self.dialect.is_yamux() && stream.syn.is_some() => {
                self.smux_window_limit(id, stream.window)
            }
            _ => 0,
        }
    }

    /// Encodes the SYN of stream `stream` (`id`), which we open: a Window Update, as Go opens
    /// (data may follow), whose delta grants `window` at once, beyond the initial 256 KiB (so
    /// the answer to a request need not wait for our first read).
    pub(super) fn encode_yamux_syn(
        out: &mut Transmit,
        id: u32,
        stream: &mut StreamState,
        window: u32,
    ) {
        let delta = match stream.bytes.as_deref_mut() {
            Some(counts) => {
                let delta = counts.grantable(window);
                if delta > 0 {
                    counts.read_told = counts.read;
                    counts.window_told = window;
                }
                delta
            }
            None => 0,
        };
        encode(out, FrameType::WindowUpdate, Flags::SYN, id, delta);
    }

    /// Encodes a Data header for `len` bytes of stream `id`.
    pub(super) fn encode_yamux_data_header(out: &mut Transmit, id: u32, len: usize) {
        encode(out, FrameType::Data, Flags::default(), id, len as u32);
    }

    /// Encodes the end of our direction of stream `stream` (`id`): FIN, or RST for an abort
    /// (after which the peer sends nothing more on it either, so the stream may go).
    pub(super) fn encode_yamux_end(out: &mut Transmit, id: u32, stream: &mut StreamState) {
        let reset = matches!(stream.send, SendState::Done(SendEnd::Reset(_)));
        let flags = match reset {
            true => {
                if let Some(counts) = stream.bytes.as_deref_mut() {
                    counts.peer_fin = true;
                }
                Flags::RST
            }
            false => Flags::FIN,
        };
        encode(out, FrameType::WindowUpdate, flags, id, 0);
    }
}

impl ByteCounts {
    /// The window the peer was last told: 256 KiB before any Window Update of ours.
    fn known_window(&self) -> u32 {
        match self.window_told {
            0 => INITIAL_PEER_WINDOW,
            told => told,
        }
    }

    /// How much a Window Update would grant now, with `window` bytes allowed beyond what the
    /// application has read: the distance from the limit the peer knows to `read + window`
    /// (a yamux window only grows).
    fn grantable(&self, window: u32) -> u32 {
        let known = self.read_told.wrapping_add(self.known_window());
        let wanted = self.read.wrapping_add(window);
        // Windows stay below 2^31 (see `Session::smux_window`): the difference's sign tells.
        let ahead = wanted.wrapping_sub(known) as i32;
        ahead.max(0) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    /// A yamux client session whose peer has opened stream 2, accepted, on a path of
    /// `rtt`.
    fn session_with_stream(rtt: Duration) -> Session {
        let mut s = Session::new(
            Config::default()
                .protocol(Protocol::Yamux)
                .role(Role::Client),
        );
        peer_opens(&mut s, 2);
        s.liveness.min_rtt = Some(rtt);
        s
    }

    /// The peer opens stream `id` (a Window Update with SYN), and the application accepts it.
    fn peer_opens(s: &mut Session, id: u32) {
        let syn = YamuxHeader {
            frame_type: FrameType::WindowUpdate,
            flags: Flags::SYN,
            stream_id: id,
            length: 0,
        };
        s.on_yamux_header(syn, Instant::now()).unwrap();
        assert!(matches!(s.app_accept(), Some(Ok((accepted, _))) if accepted == id));
    }

    /// The application reads half the stream's window; the Window Update is encoded now.
    fn read_half_and_grant(s: &mut Session) -> u32 {
        let stream = s.streams.get_mut(&2).unwrap();
        let half = stream.window / 2;
        let counts = stream.bytes.as_deref_mut().unwrap();
        counts.read = counts.read.wrapping_add(half);
        s.tune_yamux_window(2, Instant::now());
        s.streams[&2].window
    }

    #[test]
    fn a_window_read_fast_on_a_long_path_doubles_up_to_half_the_budget() {
        let mut s = session_with_stream(Duration::from_millis(50));
        let base = s.smux_window();
        // The first grant only starts the clock.
        assert_eq!(read_half_and_grant(&mut s), base);
        assert_eq!(read_half_and_grant(&mut s), 2 * base);
        assert_eq!(read_half_and_grant(&mut s), 4 * base);
        for _ in 0..10 {
            read_half_and_grant(&mut s);
        }
        let half_budget = (s.config.session_receive_buffer / 2) as u32;
        assert_eq!(s.streams[&2].window, half_budget);
    }

    #[test]
    fn a_short_path_keeps_the_configured_window() {
        let mut s = session_with_stream(Duration::from_micros(300));
        let base = s.smux_window();
        for _ in 0..5 {
            assert_eq!(read_half_and_grant(&mut s), base);
        }
    }

    #[test]
    fn a_window_read_slowly_halves_back_to_the_configured_one() {
        let mut s = session_with_stream(Duration::from_millis(20));
        let base = s.smux_window();
        read_half_and_grant(&mut s);
        assert_eq!(read_half_and_grant(&mut s), 2 * base);
        // More than eight round trips until the next half window is read.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(read_half_and_grant(&mut s), base);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(read_half_and_grant(&mut s), base);
    }

    #[test]
    fn on_a_paced_path_no_frame_is_taken_for_interleaving() {
        // A short path's sender shrinks bulk frames beside another stream's messages; on a
        // long one it paces them instead, and a short frame is only a write's tail.
        for (rtt, expected) in [
            (Duration::from_micros(300), DataFrameKind::Interleaved),
            (Duration::from_millis(50), DataFrameKind::Other),
        ] {
            let mut s = session_with_stream(rtt);
            assert_eq!(s.classify_data_frame(2, 65_536), DataFrameKind::Full);
            s.streams
                .get_mut(&2)
                .unwrap()
                .bytes
                .as_deref_mut()
                .unwrap()
                .received = 65_536;
            s.classify_data_frame(4, 64); // another stream's message
            assert_eq!(s.classify_data_frame(2, 16_384), expected, "{rtt:?}");
        }
    }

    #[test]
    fn streams_not_read_lately_leave_their_share_of_the_budget_to_the_busy_ones() {
        let mut s = session_with_stream(Duration::from_millis(50));
        peer_opens(&mut s, 4);
        let half = (s.config.session_receive_buffer / 2) as u32;
        // Just opened, stream 4 counts as read lately: stream 2 gets an even share.
        assert_eq!(s.smux_window_limit(2, u32::MAX), half / 2);
        // Once stream 2 has been read many times since, stream 4 (an idle message stream)
        // leaves its part, and only what it may still receive counts against stream 2.
        s.read_tick = s.read_tick.wrapping_add(100);
        s.streams.get_mut(&2).unwrap().last_read = s.read_tick;
        assert_eq!(s.smux_window_limit(2, u32::MAX), half - INITIAL_PEER_WINDOW);
    }

    #[test]
    fn a_grown_window_is_granted_back_a_quarter_at_a_time() {
        let mut s = session_with_stream(Duration::from_millis(50));
        let base = s.smux_window();
        for (window, read, due) in [
            (base, base / 4 + 1, false),
            (base, base / 2, true),
            (4 * base, base + 1, true),
            (4 * base, base - 1, false),
            (base + 4, base / 4 + 1, true),
        ] {
            let stream = s.streams.get_mut(&2).unwrap();
            stream.window = window;
            stream.grant_scheduled = false;
            *stream.bytes.as_deref_mut().unwrap() = counts(read, 0, window);
            s.consider_yamux_update(2);
            assert_eq!(
                s.streams[&2].grant_scheduled, due,
                "window {window}, read {read}"
            );
        }
    }

    fn counts(read: u32, read_told: u32, window_told: u32) -> ByteCounts {
        let mut counts = ByteCounts::default();
        counts.read = read;
        counts.read_told = read_told;
        counts.window_told = window_told;
        counts
    }

    #[test]
    fn before_any_update_the_peer_knows_256_kib() {
        let fresh = counts(0, 0, 0);
        assert_eq!(fresh.known_window(), INITIAL_PEER_WINDOW);
        // A 4 MiB window is granted beyond it; one no larger grants nothing.
        assert_eq!(fresh.grantable(4 << 20), (4 << 20) - INITIAL_PEER_WINDOW);
        assert_eq!(fresh.grantable(INITIAL_PEER_WINDOW), 0);
    }

    #[test]
    fn a_grant_is_what_was_read_since_the_last_plus_any_growth() {
        // Told: read 1000, window 300,000 (the limit 301,000). Read 50,000 more.
        let c = counts(51_000, 1000, 300_000);
        assert_eq!(c.grantable(300_000), 50_000);
        assert_eq!(c.grantable(400_000), 150_000);
    }

    #[test]
    fn a_smaller_window_grants_nothing_until_reading_passes_the_old_limit() {
        // yamux windows only grow: the limit the peer knows (301,000) stays until read + the
        // smaller window passes it.
        let c = counts(51_000, 1000, 300_000);
        assert_eq!(c.grantable(100_000), 0);
        let c = counts(250_000, 1000, 300_000);
        assert_eq!(c.grantable(100_000), 49_000);
    }

    #[test]
    fn the_counts_wrap_at_2_32() {
        let c = counts(10, u32::MAX - 99, 200_000);
        // 110 bytes read since the last update, across the wrap.
        assert_eq!(c.grantable(200_000), 110);
    }
}
