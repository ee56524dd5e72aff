//! The receive path: frames from the peer, the streams' receive windows and the session's
//! receive budget.

use super::*;

impl Session {
    /// Handles one frame from the peer. An error is a protocol violation that ends the session.
    pub(crate) fn on_frame(
        &mut self,
        header: Header,
        body: Bytes,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        let id = header.stream_id;
        tracing::trace!(command = ?header.command, id, len = body.len(), "frame received");
        // Any frame shows the peer alive: smux's keepalive timeout counts from it (picomux's
        // counts from the PING it sent).
        if !self.dialect.pings() {
            self.liveness.last_arrival = Some(now);
        }
        if self.farewell.bye_received {
            return Err(ProtocolError(format!(
                "{:?} frame after the peer's BYE",
                header.command
            )));
        }
        match header.command {
            Command::Syn => self.on_syn(id, &body),
            Command::Psh if self.dialect.is_picomux() => self.on_psh(id, body),
            Command::Psh => self.on_smux_psh(id, body),
            Command::Upd => match Upd::decode(&body) {
                Some(upd) => self.on_upd(id, upd),
                // The decoder checks the length; a UPD body is never anything else.
                None => Err(ProtocolError(format!(
                    "UPD on stream {id} of {} bytes",
                    body.len()
                ))),
            },
            Command::Fin => self.on_fin(id, &body),
            Command::More => {
                let credits = u16::from_le_bytes([body[0], body[1]]);
                self.on_more(id, credits);
                Ok(())
            }
            Command::Ping => {
                let info = PingInfo::decode(&body)?;
                if info.smolmux && !self.peer_is_smolmux {
                    tracing::debug!("peer speaks smolmux extensions");
                    self.peer_is_smolmux = true;
                    self.owe_stop_sending_to_dropped_streams();
                }
                if !self.peer_pinged {
                    self.peer_pinged = true;
                    self.wake_writer(); // a close may have waited for this
                    self.open_room_changed(); // how many streams we may open is known
                }
                if !self.liveness.pong_owed {
                    self.liveness.pong_owed = true;
                    self.wake_writer();
                }
                Ok(())
            }
            Command::Pong => {
                self.on_pong(now);
                Ok(())
            }
            Command::Nop => match Signal::decode(&body) {
                Some(Signal::StopSending) => {
                    self.on_stop_sending(id);
                    Ok(())
                }
                Some(Signal::MoreStreams(count)) => {
                    self.on_more_streams(count);
                    Ok(())
                }
                Some(Signal::GoAway) => {
                    self.on_goaway();
                    Ok(())
                }
                Some(Signal::Bye) => self.on_bye(),
                None => Ok(()),
            },
        }?;
        if !self.is_open() {
            self.progress();
        }
        Ok(())
    }

    pub(super) fn on_syn(&mut self, id: u32, metadata: &[u8]) -> Result<(), ProtocolError> {
        self.dialect.check_peer_id(id)?;
        if self.streams.contains_key(&id) {
            return Err(ProtocolError(format!("duplicate SYN for open stream {id}")));
        }
        self.count_peer_open();
        let refuse = if !self.is_open() {
            Some("stream refused: session closing")
        } else if self.streams.len() >= self.config.max_streams {
            Some("stream refused: max_streams reached")
        } else if self.accept_queue.len() >= self.config.accept_backlog {
            Some("stream refused: accept backlog full")
        } else {
            None
        };
        if let Some(why) = refuse {
            tracing::debug!(id, why, "refusing stream");
            if self.keep_refused_smux_stream(id, why) {
                return Ok(());
            }
            self.refusals.push_back((id, why));
            self.wake_writer();
            return Ok(());
        }
        tracing::debug!(id, "stream opened by peer");
        let stream = self.new_stream(None);
        self.streams.insert(id, stream);
        self.accept_queue.push_back((id, metadata.into()));
        self.notify_accept = true;
        Ok(())
    }

    pub(super) fn on_psh(&mut self, id: u32, body: Bytes) -> Result<(), ProtocolError> {
        self.largest_psh_received = self.largest_psh_received.max(body.len());
        // A smolmux peer may interleave from its first frame on, before any full frame shows
        // what full is: our own max_frame_body stands in (peers usually share a configuration).
        // Other peers never interleave, and picomux's 8 KiB frames must not pass for it.
        let full_frame = if self.peer_is_smolmux {
            self.largest_psh_received.max(self.config.max_frame_body)
        } else {
            self.largest_psh_received
        };
        // On a path long enough to pace (both ends measure about the same round trip; near
        // MIN_PACED_RTT they may disagree, which costs messages some latency, not bytes), a
        // smolmux peer paces its bulk beside messages instead of shrinking its frames, so a
        // short frame there is only a write's tail, not interleaving: cutting the window to 10
        // frames for it threw away what the tuner had grown (traced at 150 ms / 1 Gbit/s: a
        // window of 781 frames back to 64 twice in a 4-second transfer, which then moved 0.81×
        // of raw TCP).
        let interleaved = body.len() * 2 < full_frame && !self.paces_path();
        let max_window = self.max_window;
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(()); // the stream may have just closed
        };
        if stream.peer_credits == 0 {
            return Err(ProtocolError(format!(
                "PSH on stream {id} beyond the credits granted"
            )));
        }
        stream.peer_credits -= 1;
        match stream.recv {
            RecvState::Finished => {
                return Err(ProtocolError(format!("PSH on stream {id} after its FIN")));
            }
            // Data in flight when the stream was aborted: discard it.
            RecvState::Reset(_) => return Ok(()),
            RecvState::Open => {}
        }
        if stream.handles.reader_dropped() || body.is_empty() {
            // Nobody will read it: credit it back as if read, so the peer never stalls.
            self.consider_grant(id);
            return Ok(());
        }
        stream.frame_len = ((u32::from(stream.frame_len) * 7 + (body.len() >> 8) as u32) / 8) as u8;
        self.recv_buffered += body.len();
        stream.recv_queue.push_back(body);
        self.wake.extend(stream.read_waker.take());
        // An interleaved frame means the peer is sending this stream's data beside another
        // stream's messages (see INTERLEAVED_FRAME_DIVISOR): it wants few bytes in flight ahead
        // of them. A full frame means it no longer does: the window is at least the whole
        // receive buffer again, or what the tuner grew it to.
        stream.window = if interleaved {
            INITIAL_CREDITS
        } else {
            stream.window.max(max_window)
        };
        self.enforce_receive_budget();
        Ok(())
    }

    /// Keeps the unread bytes of all streams within `session_receive_buffer` by resetting the
    /// streams read longest ago (streams whose application waits in `read` last; of those
    /// never read, the one holding most). The protocol gives every new stream 10
    /// frames without a grant, so enough streams whose application does not read can hold more
    /// than any budget; stopping to read the connection instead would stop the PINGs, PONGs and
    /// the streams that are read with them, and let the peer's ping timeout end the session.
    pub(super) fn enforce_receive_budget(&mut self) {
        let read_tick = self.read_tick;
        while self.recv_buffered > self.config.session_receive_buffer {
            let Some(victim) = self
                .streams
                .iter()
                .filter(|(_, stream)| !stream.recv_queue.is_empty())
                .max_by_key(|(_, stream)| {
                    // A stream whose application waits in `read` takes its data at once.
                    let nobody_waiting = stream.read_waker.is_none();
                    let unread_for = read_tick.wrapping_sub(stream.last_read);
                    (nobody_waiting, unread_for, stream.unread_bytes())
                })
                .map(|(id, _)| *id)
            else {
                return;
            };
            tracing::debug!(id = victim, "receive budget exceeded: resetting the stream");
            if let Some(at) = self.accept_queue.iter().position(|(id, _)| *id == victim) {
                self.accept_queue.remove(at);
                if let Some(stream) = self.streams.get_mut(&victim) {
                    stream.handles = Handles::Dropped;
                }
            }
            self.reset_stream(
                victim,
                Some(RECEIVE_BUDGET_EXCEEDED),
                RECEIVE_BUDGET_EXCEEDED,
            );
        }
    }

    pub(super) fn on_fin(&mut self, id: u32, reason: &[u8]) -> Result<(), ProtocolError> {
        let half_close = self.dialect.fin_half_closes(self.peer_is_smolmux);
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        if let Some(counts) = stream.bytes.as_deref_mut() {
            counts.peer_fin = true;
            if matches!(stream.recv, RecvState::Reset(_)) {
                // The FIN that ends the discarding entry of an abort or a refusal.
                self.maybe_remove(id);
                return Ok(());
            }
        }
        let ended = match stream.recv {
            RecvState::Open => false,
            // An abort after the peer's FIN still resets our direction (and what is unread).
            RecvState::Finished => reason.is_empty(),
            RecvState::Reset(_) => true,
        };
        if ended {
            return Ok(()); // a FIN crossing our abort, or a repeated FIN: nothing left to end
        }
        if !reason.is_empty() {
            if let Some(at) = self
                .accept_queue
                .iter()
                .position(|(queued, _)| *queued == id)
            {
                return self.drop_unaccepted(at);
            }
            let reason = ResetReason::new(String::from_utf8_lossy(reason).into_owned());
            tracing::debug!(id, %reason, "stream aborted by peer");
            self.recv_buffered -= stream.discard_received();
            stream.recv = RecvState::Reset(reason.clone());
            self.send_buffered -= stream.send_buf.len();
            stream.send_buf.clear();
            stream.stop_owed = false;
            if !stream.local_done() {
                stream.syn = None;
                stream.send = SendState::Done(SendEnd::Reset(reason));
            }
        } else {
            tracing::debug!(id, "FIN received");
            stream.recv = RecvState::Finished;
            stream.stop_owed = false;
            if !half_close && matches!(stream.send, SendState::Open | SendState::FinQueued) {
                // A picomux peer's FIN ends both directions: bytes we sent now would be dropped.
                let lost = stream.send_buf.len();
                self.send_buffered -= lost;
                stream.send_buf.clear();
                stream.send = SendState::Done(SendEnd::PeerClosed(lost));
            }
        }
        stream.wake_all(&mut self.wake);
        self.watch_stall(id);
        self.maybe_remove(id);
        Ok(())
    }

    /// The peer aborted a stream still in the accept backlog: forget it before the application
    /// ever sees it, and end the session if the peer makes a habit of it.
    pub(super) fn drop_unaccepted(&mut self, at: usize) -> Result<(), ProtocolError> {
        let (id, _) = self.accept_queue.remove(at).expect("index from position()");
        let mut stream = self
            .streams
            .remove(&id)
            .expect("queued streams are in the table");
        self.recv_buffered -= stream.discard_received();
        self.send_buffered -= stream.send_buf.len();
        self.wake_reader_if_room();
        self.early_resets += 1;
        if self.early_resets > MAX_EARLY_RESETS {
            return Err(ProtocolError(format!(
                "peer aborted {} more streams before they were accepted than it let be accepted (rapid reset)",
                self.early_resets
            )));
        }
        Ok(())
    }

    /// The peer will read no more of stream `id`: discard what we had queued and end our
    /// direction with an empty FIN; our writes fail from now on.
    pub(super) fn on_stop_sending(&mut self, id: u32) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if !matches!(stream.send, SendState::Open | SendState::FinQueued) {
            return;
        }
        tracing::debug!(id, "STOP_SENDING received");
        let lost = stream.send_buf.len();
        self.send_buffered -= lost;
        stream.send_buf.clear();
        stream.send = SendState::StopQueued(lost);
        self.wake.extend(stream.write_waker.take());
        self.schedule_data(id);
    }

    pub(super) fn on_more(&mut self, id: u32, credits: u16) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.send_credits = stream.send_credits.saturating_add(credits.into());
        self.schedule_data(id);
    }

    pub(super) fn on_pong(&mut self, now: Instant) {
        let Some(sent_at) = self.liveness.ping_sent_at.take() else {
            return; // unsolicited: no PING of ours is outstanding
        };
        let rtt = now.saturating_duration_since(sent_at);
        tracing::trace!(?rtt, "PONG received");
        self.liveness.last_rtt = Some(rtt);
        let min_rtt = self.liveness.min_rtt.map_or(rtt, |min| min.min(rtt));
        self.liveness.min_rtt = Some(min_rtt);
        let pacing = self.bulk_pacing_rate().is_some();
        self.pacer.on_pong(now, min_rtt, pacing);
        if self.liveness.rtt_samples < STARTUP_RTT_SAMPLES {
            // A few PINGs in a row at the start, so one slow first answer (the peer may still be
            // starting) does not stand as the path's RTT.
            self.liveness.rtt_samples += 1;
            self.liveness.ping_wanted = true;
            self.wake_writer();
        } else {
            // The next PSH starts the next queue-measuring PING, if still worth it (see
            // `encode_data`): starting it here would keep two idle peers exchanging PINGs and
            // PONGs for ever.
            self.liveness.next_ping_at = self
                .liveness
                .interval
                .and_then(|interval| now.checked_add(interval));
        }
        if !self.held.is_empty() {
            self.wake_writer();
        }
        self.wake.extend(self.timer_waker.take());
    }

    /// Whether the driver should stop reading the connection for now, because the writer must
    /// catch up (refusals), or, in smux, because unread data fills the receive budget (see
    /// [`Session::receive_budget_full`]). Registers `waker` to be woken when reading may
    /// resume. (In picomux a full budget never stops the reader: see
    /// [`Session::enforce_receive_budget`].)
    pub(crate) fn reader_must_wait(&mut self, waker: &Waker) -> bool {
        let full = self.reader_paused();
        if full && self.end().is_none() {
            self.reader_waker = Some(waker.clone());
        }
        full
    }

    /// Whether the session takes no more frames for now (see [`Session::reader_must_wait`]).
    pub(crate) fn reader_paused(&self) -> bool {
        self.refusals.len() >= MAX_PENDING_REFUSALS
            || self.receive_budget_full()
            || self.yamux.pongs_full()
    }

    pub(super) fn wake_reader_if_room(&mut self) {
        if self.reader_waker.is_some() && !self.reader_paused() {
            self.wake.extend(self.reader_waker.take());
        }
    }

    /// Frames that windows may hold beyond their 10-frame floors, over all streams together:
    /// half the full frames `session_receive_buffer` holds. The other half is for the floors,
    /// which the protocol gives every stream without a grant: so readers that stall with full
    /// windows cannot fill the session's buffer (which would stop every stream) unless about
    /// fifty streams are open (at the defaults: 51 × 10 frames fill half of 64 MiB).
    pub(super) fn excess_budget(&self) -> usize {
        self.config.session_receive_buffer / MAX_BODY / 2
    }

    /// The most frames stream `id`'s window may hold now: the 10-frame floor plus an even share
    /// of the [`Session::excess_budget`] among the open streams that want it: `id` and those
    /// with at least half their window free or read lately ([`Session::wants_share`]). A
    /// stream whose window is granted out but not read (an idle message stream) or full of
    /// unread frames (a stalled reader) leaves its part to the others: what it holds still
    /// counts in [`Session::window_limit`], which keeps the total within the budget. (A
    /// stream's own window starts at `stream_receive_buffer` and passes it only as
    /// [`Session::tune_window`] grows it.)
    pub(super) fn window_share(&self, id: u32) -> u32 {
        let wanting = if self.streams.len() > self.excess_budget() {
            // Every share is below a frame anyway: no need to look at each stream (this also
            // bounds the scan to as many streams as the excess budget has frames).
            self.streams.len()
        } else {
            self.streams
                .iter()
                .filter(|(other, stream)| **other == id || self.wants_share(stream))
                .count()
        };
        let share = self.excess_budget() / wanting.max(1);
        let share = u32::try_from(share).unwrap_or(u32::MAX);
        INITIAL_CREDITS.saturating_add(share)
    }

    /// Whether `stream` could take credits beyond those it holds: half its window or more is
    /// free, as when it has just been opened or its reader keeps up with a busy peer, or its
    /// application read it lately, as a bulk stream on a long path, most of whose window the
    /// path holds granted out. (Counting only free windows, streams that grew their windows
    /// first kept them while the others were held to what was left: 8 bulk streams at
    /// 150 ms / 1 Gbit/s finished 1.7-1.9 s apart, and the last ones alone could not fill the
    /// path; docs/performance.md.)
    fn wants_share(&self, stream: &StreamState) -> bool {
        if !matches!(stream.recv, RecvState::Open) {
            return false;
        }
        let free = stream.window.saturating_sub(stream.committed_frames());
        free >= stream.window / 2 || self.read_lately(stream)
    }

    /// Whether `stream` was read within the session's last [`RECENT_READS_PER_STREAM`] reads
    /// per open stream: a clock of reads, not of time, so that a stream read as often as the
    /// others counts, however fast they all go, and a message stream read once a round trip
    /// beside a bulk transfer does not.
    pub(super) fn read_lately(&self, stream: &StreamState) -> bool {
        let streams = u32::try_from(self.streams.len()).unwrap_or(u32::MAX);
        self.read_tick.wrapping_sub(stream.last_read)
            < streams.saturating_mul(RECENT_READS_PER_STREAM)
    }

    /// The most frames stream `id`'s window may hold now: its [`Session::window_share`], with
    /// beyond the floor only what the other streams' windows leave of the excess budget. (The
    /// share alone would not do: streams that were alone took more than their share.)
    pub(super) fn window_limit(&self, id: u32) -> u32 {
        let share = self.window_share(id);
        if share <= INITIAL_CREDITS {
            // No window may pass the floor: no need to add up the others (this also bounds the
            // sum below to as many streams as the excess budget has frames).
            return INITIAL_CREDITS;
        }
        let others: usize = self
            .streams
            .iter()
            .filter(|(other, _)| **other != id)
            .map(|(_, stream)| self.excess_full_frames(stream) as usize)
            .sum();
        let left = self.excess_budget().saturating_sub(others);
        let left = u32::try_from(left).unwrap_or(u32::MAX);
        INITIAL_CREDITS.saturating_add(left).min(share)
    }

    /// Queues a MORE for stream `id` once half its window is free (batching the grants); in
    /// smux v2, a UPD when one is due.
    pub(super) fn consider_grant(&mut self, id: u32) {
        match self.dialect.flow() {
            Flow::FrameCredits => {}
            Flow::ByteWindow => return self.consider_upd(id),
            Flow::SessionOnly => return,
        }
        let Some(stream) = self.streams.get(&id) else {
            return;
        };
        // Before its SYN is out the peer cannot know the stream: a MORE would come first.
        if stream.grant_scheduled || stream.syn.is_some() || !matches!(stream.recv, RecvState::Open)
        {
            return;
        }
        let batch = window::grant_batches(stream.window, self.max_window);
        // The even share bounds the exact limit from above, and is cheaper to check first (it
        // counts the streams that want a share; the limit also adds up what they hold).
        if !stream.grant_due(self.window_in_frames(stream, self.window_share(id)), batch)
            || !stream.grant_due(self.window_in_frames(stream, self.window_limit(id)), batch)
        {
            return;
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.grant_scheduled = true;
        self.grant_queue.push_back(id);
        self.wake_writer();
    }
}
