//! The send scheduler: control frames first, then one frame per stream in turn, with bulk
//! frames held back while the queue ahead of messages is too long.

use super::*;

impl Session {
    pub(super) fn wake_writer(&mut self) {
        self.wake.extend(self.writer_waker.take());
    }

    pub(crate) fn set_writer_waker(&mut self, waker: &Waker) {
        self.writer_waker = Some(waker.clone());
    }

    pub(super) fn schedule_data(&mut self, id: u32) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if !stream.data_scheduled && stream.next_data_frame().is_some() {
            stream.data_scheduled = true;
            self.data_queue.push_back(id);
            self.wake_writer();
        }
    }

    /// Encodes frames to send into `out` until it holds at least `budget` bytes or nothing is
    /// ready. Control frames go first; then streams take turns, one frame each (round-robin), so
    /// one bulk stream cannot starve the others.
    pub(crate) fn poll_transmit(&mut self, out: &mut Transmit, budget: usize, now: Instant) {
        if self.end().is_some() || self.silent() {
            return;
        }
        let encoded_before = out.len();
        self.pacer.settle(now, self.bulk_pacing_rate());
        let hold_bulk = self.queue_too_long(now);
        if !hold_bulk && !self.pacing_holds(now) {
            self.data_queue.extend(self.held.drain(..));
        }
        while out.len() < budget {
            if self.encode_control(out, now) {
                continue;
            }
            let Some(id) = self.data_queue.pop_front() else {
                break;
            };
            if self.sends_bulk(id) && (hold_bulk || self.pacing_holds(now)) {
                self.held.push(id);
                continue;
            }
            self.encode_data(id, out);
        }
        if out.len() == encoded_before && self.send_buffered == 0 {
            // The writer would send more, and nothing is written: the application limits this
            // round, not the path. (A writer that finds everything gone into its batch is not
            // idle: the connection holds it back.)
            self.pacer.on_idle();
        }
        self.update_hold_release(now);
        if self.chunks.arm(now) {
            // The timer must learn the pool's first look.
            self.wake.extend(self.timer_waker.take());
        }
        if !self.is_open() {
            // The FINs just encoded may have finished the last streams.
            self.progress();
            if self.bye_due() {
                tracing::debug!("BYE sent");
                self.farewell.bye_sent = true;
                out.encode(|b| Signal::Bye.encode_frame(b, 0));
            }
        }
    }

    /// Whether messages are flowing and the PING measuring the queue ahead of them is overdue
    /// (see [`QUEUE_ALLOWANCE`]).
    pub(super) fn queue_too_long(&self, now: Instant) -> bool {
        let (Some(sent), Some(limit)) = (self.liveness.ping_sent_at, self.queue_limit()) else {
            return false;
        };
        let waited = now.saturating_duration_since(sent);
        self.lately_messaging().is_some()
            && waited > limit
            && waited < limit.saturating_mul(MAX_HOLD_FACTOR)
    }

    /// The rate bulk frames are paced at, if they are: while messages flow on a path long
    /// enough to pace (see [`crate::congestion`]).
    pub(super) fn bulk_pacing_rate(&self) -> Option<u64> {
        self.lately_messaging()?;
        self.pacer.pacing_rate(self.liveness.min_rtt)
    }

    /// Whether bulk frames must wait for the pacer at `now`.
    pub(super) fn pacing_holds(&self, now: Instant) -> bool {
        self.bulk_pacing_rate()
            .is_some_and(|rate| !self.pacer.may_send(now, rate))
    }

    /// Whether the path is long enough to pace bulk frames beside messages, rather than shrink
    /// them (see [`INTERLEAVED_FRAME_DIVISOR`]). Unknown paths count as short.
    pub(super) fn paces_path(&self) -> bool {
        self.liveness
            .min_rtt
            .is_some_and(|rtt| rtt >= crate::congestion::MIN_PACED_RTT)
    }

    /// When the bulk streams held at `now` may go without a PONG: when the PING measuring
    /// the queue is given up on (see [`MAX_HOLD_FACTOR`]), or the pacer allows, whichever
    /// is later of those that hold them.
    pub(super) fn hold_release(&self, now: Instant) -> Option<Instant> {
        let queue = self
            .liveness
            .ping_sent_at
            .filter(|_| self.queue_too_long(now))
            .zip(self.queue_limit())
            .and_then(|(sent, limit)| sent.checked_add(limit.saturating_mul(MAX_HOLD_FACTOR)));
        let pacer = self
            .bulk_pacing_rate()
            .filter(|_| self.pacing_holds(now))
            .and_then(|rate| self.pacer.release_at(rate));
        queue.max(pacer)
    }

    /// Records [`Session::hold_release`] for the timer, waking it if the deadline changed.
    pub(super) fn update_hold_release(&mut self, now: Instant) {
        let until = if self.held.is_empty() {
            None
        } else {
            self.hold_release(now)
        };
        if until != self.held_until {
            self.held_until = until;
            self.wake.extend(self.timer_waker.take());
        }
    }

    pub(super) fn queue_limit(&self) -> Option<Duration> {
        self.liveness
            .min_rtt
            .map(|rtt| rtt.saturating_mul(2).saturating_add(QUEUE_ALLOWANCE))
    }

    /// Whether the next frame of stream `id` is a PSH too big to be a message.
    pub(super) fn sends_bulk(&self, id: u32) -> bool {
        let message_max = self.config.max_frame_body / INTERLEAVED_FRAME_DIVISOR;
        self.streams.get(&id).is_some_and(|stream| {
            stream.next_data_frame() == Some(DataFrame::Psh) && stream.send_buf.len() >= message_max
        })
    }

    /// Encodes one control frame, if any is waiting.
    pub(super) fn encode_control(&mut self, out: &mut Transmit, now: Instant) -> bool {
        if self.encode_yamux_pong(out) {
            return true;
        }
        if self.liveness.pong_owed {
            self.liveness.pong_owed = false;
            tracing::trace!("PONG sent");
            out.encode(|b| encode_frame(b, Command::Pong, 0, b""));
            return true;
        }
        if self.goaway_due() {
            tracing::debug!("GOAWAY sent");
            self.farewell.goaway_sent = true;
            match self.dialect.is_yamux() {
                true => Session::encode_yamux_goaway(out),
                false => out.encode(|b| Signal::GoAway.encode_frame(b, 0)),
            }
            return true;
        }
        if self.liveness.ping_wanted
            && self.liveness.ping_sent_at.is_none()
            && !self.farewell.bye_received
        {
            if !self.dialect.pings() {
                self.encode_keepalive(out, now);
                return true;
            }
            if self.dialect.is_yamux() {
                self.encode_yamux_ping(out, now);
                return true;
            }
            self.liveness.ping_wanted = false;
            self.liveness.ping_sent_at = Some(now);
            self.pacer.on_ping_sent(now);
            let next_ping_in_ms = self
                .liveness
                .interval
                .map_or(u32::MAX, |d| d.as_millis().min(u32::MAX as u128) as u32);
            let ping = PingInfo {
                next_ping_in_ms,
                smolmux: true,
            };
            tracing::trace!("PING sent");
            out.encode(|b| ping.encode_frame(b));
            self.wake.extend(self.timer_waker.take());
            return true;
        }
        if let Some((id, why)) = self.refusals.pop_front() {
            // A FIN with a reason: a smolmux opener sees its reads and writes fail with it (an
            // empty FIN would read as a half-close, and its writes would wait for credits that
            // never come); a picomux opener sees its stream end. smux's FIN has no body: a
            // smux opener sees only the end of the stream.
            let protocol = self.dialect.protocol;
            let body = if self.dialect.has_bodies() { why } else { "" };
            tracing::trace!(id, why, "refusal sent");
            match self.dialect.is_yamux() {
                true => Session::encode_yamux_refusal(out, id),
                false => {
                    out.encode(|b| encode_frame_as(b, protocol, Command::Fin, id, body.as_bytes()))
                }
            }
            self.wake_reader_if_room();
            return true;
        }
        if self.encode_stream_grant(out) {
            return true;
        }
        while let Some(id) = self.grant_queue.pop_front() {
            if self.dialect.flow() == Flow::ByteWindow {
                if self.encode_upd(id, out) {
                    return true;
                }
                continue;
            }
            let limit = self.window_limit(id);
            self.tune_window(id, limit, now);
            let Some(stream) = self.streams.get(&id) else {
                continue;
            };
            let limit = self.window_in_frames(stream, limit);
            let Some(stream) = self.streams.get_mut(&id) else {
                continue;
            };
            stream.grant_scheduled = false;
            let credits = stream.free_window(limit).min(u16::MAX.into());
            if credits == 0 || !matches!(stream.recv, RecvState::Open) {
                continue;
            }
            stream.peer_credits += credits;
            tracing::trace!(id, credits, "MORE sent");
            out.encode(|b| encode_frame(b, Command::More, id, &(credits as u16).to_le_bytes()));
            return true;
        }
        false
    }

    /// Encodes the next frame of stream `id` and puts it back in line if it has more to send.
    pub(super) fn encode_data(&mut self, id: u32, out: &mut Transmit) {
        let max_body = self.config.max_frame_body;
        let message_max = max_body / INTERLEAVED_FRAME_DIVISOR;
        let frame_max =
            if !self.paces_path() && self.lately_messaging().is_some_and(|sender| sender != id) {
                message_max.max(1)
            } else {
                max_body
            };
        let dialect = self.dialect;
        let syn_window = self.yamux_syn_window(id);
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.data_scheduled = false;
        match stream.next_data_frame() {
            None => {}
            Some(DataFrame::StopSending) => {
                stream.stop_owed = false;
                tracing::debug!(id, "STOP_SENDING sent");
                out.encode(|b| Signal::StopSending.encode_frame(b, id));
            }
            Some(DataFrame::Syn) => {
                let metadata = stream.syn.take().map(|m| *m).unwrap_or_default();
                tracing::trace!(id, len = metadata.len(), "SYN sent");
                match dialect.is_yamux() {
                    true => Session::encode_yamux_syn(out, id, stream, syn_window),
                    false => out.encode(|b| {
                        encode_frame_as(b, dialect.protocol, Command::Syn, id, &metadata)
                    }),
                }
                // Wake a flush waiting for the SYN to go.
                self.wake.extend(stream.write_waker.take());
            }
            Some(DataFrame::Psh) => {
                // Split what is queued evenly over the fewest frames, so a 64 KiB write does
                // not cost a second credit for a 1-byte tail.
                let queued = stream.send_buf.len();
                let mut len = queued.div_ceil(queued.div_ceil(frame_max));
                if dialect.flow() == Flow::ByteWindow {
                    len = len.min(stream.send_credits as usize); // smux v2: what the window allows
                }
                self.psh_sent += 1;
                if len < queued || len >= message_max {
                    self.last_bulk = Some(self.psh_sent);
                } else if !stream.mid_burst {
                    self.last_message = Some((self.psh_sent, id));
                }
                stream.mid_burst = len < queued;
                tracing::trace!(id, len, "PSH sent");
                match dialect.is_yamux() {
                    true => Session::encode_yamux_data_header(out, id, len),
                    false => {
                        let header = Header {
                            command: Command::Psh,
                            body_len: len as u16,
                            stream_id: id,
                        };
                        out.encode(|b| header.encode_as(b, dialect.protocol));
                    }
                }
                stream.send_buf.take(len, &mut self.chunks, |piece| {
                    if piece.len() >= SHARED_BODY_MIN {
                        out.push_shared(piece);
                    } else {
                        out.encode(|b| b.extend_from_slice(&piece));
                    }
                });
                match dialect.flow() {
                    Flow::FrameCredits => stream.send_credits -= 1,
                    Flow::ByteWindow => {
                        stream.send_credits -= len as u32;
                        if let Some(counts) = stream.bytes.as_deref_mut() {
                            counts.sent = counts.sent.wrapping_add(len as u32);
                        }
                        if stream.stalled_after_fin() {
                            // See `Session::fail_stalled_writes`: the timer starts its clock.
                            self.wake.extend(self.timer_waker.take());
                        }
                    }
                    Flow::SessionOnly => {}
                }
                self.send_buffered -= len;
                self.pacer.on_sent(len);
                // Wake a writer waiting for room, or a flush waiting for the buffer to drain.
                self.wake.extend(stream.write_waker.take());
            }
            Some(DataFrame::Fin) => {
                let wire = match std::mem::replace(&mut stream.send, SendState::FinSent) {
                    SendState::AbortQueued(abort) => {
                        stream.send = SendState::Done(SendEnd::Reset(abort.reason));
                        abort.wire
                    }
                    SendState::StopQueued(lost) => {
                        stream.send = SendState::Done(SendEnd::Stopped(lost));
                        Bytes::new()
                    }
                    SendState::StallQueued(lost) => {
                        stream.send = SendState::Done(SendEnd::Stalled(lost));
                        Bytes::new()
                    }
                    _ => Bytes::new(),
                };
                // smux's FIN has no body: an abort there is a plain FIN.
                let body: &[u8] = if dialect.has_bodies() { &wire } else { b"" };
                match dialect.is_yamux() {
                    true => Session::encode_yamux_end(out, id, stream),
                    false => {
                        out.encode(|b| encode_frame_as(b, dialect.protocol, Command::Fin, id, body))
                    }
                }
                tracing::debug!(id, "FIN sent");
                self.wake.extend(stream.write_waker.take());
                self.maybe_remove(id);
                return;
            }
        }
        if dialect.pings() && self.queue_worth_measuring() && self.liveness.ping_sent_at.is_none() {
            // Measure the queue this frame joins (see QUEUE_ALLOWANCE).
            self.liveness.ping_wanted = true;
        }
        self.schedule_data(id);
    }

    /// Whether the PSH frame numbered `at` (in `psh_sent`) is among the last
    /// [`Session::message_memory`].
    pub(super) fn sent_lately(&self, at: u64) -> bool {
        self.psh_sent - at < self.message_memory()
    }

    /// How many PSH frames "lately" spans (see [`MESSAGE_MEMORY`]): on a paced path, the full
    /// frames of [`MESSAGE_MEMORY_ROUND_TRIPS`] bandwidth × delay products, as a message
    /// stream that waits for each answer sends one message per round trip.
    pub(super) fn message_memory(&self) -> u64 {
        let bdp = match self.liveness.min_rtt {
            Some(rtt) if self.paces_path() => self.pacer.bdp(rtt).unwrap_or(0),
            _ => 0,
        };
        let frames = bdp / self.config.max_frame_body as u64;
        MESSAGE_MEMORY.max(frames.saturating_mul(MESSAGE_MEMORY_ROUND_TRIPS))
    }

    /// The stream that sent the latest small message, if it did so lately: while one does,
    /// the other streams interleave their bulk data in smaller frames.
    pub(super) fn lately_messaging(&self) -> Option<u32> {
        self.last_message
            .filter(|&(at, _)| self.sent_lately(at))
            .map(|(_, sender)| sender)
    }

    /// Whether bulk frames flow lately beside messages, so that a PING should measure the
    /// queue they build ahead of the messages (see [`QUEUE_ALLOWANCE`]), or on a path long
    /// enough to pace, so that the pacer knows the path's rate when messages come (one PING
    /// per round trip: nothing beside a bulk transfer's frames).
    pub(super) fn queue_worth_measuring(&self) -> bool {
        (self.lately_messaging().is_some() || self.paces_path())
            && self.last_bulk.is_some_and(|at| self.sent_lately(at))
    }
}
