//! The operations of the application: open, accept, read, write, flush, close, abort and
//! the handles' drops.

use super::*;

impl Session {
    /// Opens a stream: its SYN (with `metadata`) goes out at once, and data may follow it.
    /// `Ok(None)`: no stream credit or no free slot now; the caller waits for `notify_open`.
    pub(crate) fn app_open(&mut self, metadata: Bytes) -> io::Result<Option<u32>> {
        self.check_alive()?;
        if metadata.len() > MAX_BODY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "metadata is {} bytes; at most {MAX_BODY} fit in a SYN",
                    metadata.len()
                ),
            ));
        }
        if !metadata.is_empty() && !self.dialect.has_bodies() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{:?} streams carry no metadata: open them with empty metadata (open(b\"\"))",
                    self.dialect.protocol
                ),
            ));
        }
        if !self.is_open() {
            return Err(self.draining_error());
        }
        if !self.may_open() {
            return Ok(None);
        }
        let streams = &self.streams;
        let Some(id) = self.ids.next(|id| streams.contains_key(&id)) else {
            return Err(io::Error::other(
                "every stream id of this session has been used (smux never reuses one): \
                 open a new connection",
            ));
        };
        self.ours.opened += 1;
        tracing::debug!(id, "stream opened");
        let stream = self.new_stream(Some(Box::new(metadata)));
        self.streams.insert(id, stream);
        self.count_unacked_open(id);
        self.schedule_data(id);
        Ok(Some(id))
    }

    /// Why [`Session::app_open`] cannot open a stream now (for `Mux::try_open`).
    pub(crate) fn open_blocked_error(&self) -> io::Error {
        let message = if self.streams.len() >= self.config.max_streams {
            format!(
                "too many open streams (max_streams = {}): open() waits for one to close",
                self.config.max_streams
            )
        } else if !self.unacked_room() {
            format!(
                "{} opens await the yamux peer's ACK: open() waits until it accepts some",
                yamux::MAX_UNACKED_OPENS
            )
        } else {
            "the peer accepts no more streams for now (its stream credits are used up): \
             open() waits until it accepts some"
                .to_owned()
        };
        io::Error::new(io::ErrorKind::WouldBlock, message)
    }

    /// Takes the oldest stream waiting to be accepted.
    pub(crate) fn app_accept(&mut self) -> Option<io::Result<(u32, Box<[u8]>)>> {
        // After an orderly end, streams already queued are still handed out (they may hold
        // data and their FIN); after a failure they are not.
        if let Some(end) = self.end().filter(|end| !end.is_clean()) {
            return Some(Err(end.error()));
        }
        if let Some(accepted) = self.accept_queue.pop_front() {
            self.early_resets = self.early_resets.saturating_sub(1);
            self.owe_yamux_ack(accepted.0);
            self.consider_stream_grant();
            return Some(Ok(accepted));
        }
        if let Err(err) = self.check_alive() {
            return Some(Err(err));
        }
        if !self.is_open() {
            return Some(Err(self.draining_error()));
        }
        None
    }

    /// Reads buffered bytes of stream `id` into `buf`: `Some(Ok(0))` at EOF, `None` when the
    /// caller must wait (its waker is registered).
    pub(crate) fn app_read(
        &mut self,
        id: u32,
        buf: &mut [u8],
        waker: &Waker,
    ) -> Option<io::Result<usize>> {
        let session_error = self.end().map(SessionEnd::error);
        let stream = match self.streams.get_mut(&id) {
            Some(stream) => stream,
            None => return Some(Err(stream_gone())),
        };
        if let RecvState::Reset(reason) = &stream.recv {
            return Some(Err(reset_error(reason)));
        }
        if stream.recv_queue.is_empty() {
            if matches!(stream.recv, RecvState::Finished) || buf.is_empty() {
                return Some(Ok(0));
            }
            if let Some(err) = session_error {
                return Some(Err(err));
            }
            stream.read_waker = Some(waker.clone());
            return None;
        }
        let mut copied = 0;
        while copied < buf.len() {
            let Some(front) = stream.recv_queue.front_mut() else {
                break;
            };
            let n = front.len().min(buf.len() - copied);
            buf[copied..copied + n].copy_from_slice(&front[..n]);
            front.advance(n);
            copied += n;
            if front.is_empty() {
                stream.recv_queue.pop_front();
            }
        }
        self.read_tick = self.read_tick.wrapping_add(1);
        stream.last_read = self.read_tick;
        stream.count_read(copied);
        self.recv_buffered -= copied;
        self.consider_grant(id);
        self.wake_reader_if_room();
        Some(Ok(copied))
    }

    /// Buffers bytes for stream `id`; `None` when the caller must wait (its waker is registered).
    pub(crate) fn app_write(
        &mut self,
        id: u32,
        data: &[u8],
        waker: &Waker,
    ) -> Option<io::Result<usize>> {
        let send_limit = self.stream_send_limit();
        let session_error = self.end().map(SessionEnd::error);
        let stream = match self.streams.get_mut(&id) {
            Some(stream) => stream,
            None => return Some(Err(stream_gone())),
        };
        // The stream's own end, if it has one, says more than the session's.
        if let Err(err) = writable(stream) {
            return Some(Err(err));
        }
        if let Some(err) = session_error {
            return Some(Err(err));
        }
        let room = send_limit.saturating_sub(stream.send_buf.len());
        if room == 0 {
            stream.write_waker = Some(waker.clone());
            return None;
        }
        let n = room.min(data.len());
        stream.send_buf.push(&data[..n], &mut self.chunks);
        self.send_buffered += n;
        if stream.stalled_after_fin() {
            // See `Session::fail_stalled_writes`: the timer starts its clock.
            self.wake.extend(self.timer_waker.take());
        }
        self.schedule_data(id);
        Some(Ok(n))
    }

    /// How many bytes one stream may buffer from `write` just now (see [`CROWDED_SEND_BUFFERS`]).
    pub(super) fn stream_send_limit(&self) -> usize {
        let limit = self.config.stream_send_buffer;
        if self.send_buffered >= limit.saturating_mul(CROWDED_SEND_BUFFERS) {
            limit.min(CROWDED_SEND_BUFFER)
        } else {
            limit
        }
    }

    /// Waits until the bytes written to stream `id` have been handed to the connection.
    pub(crate) fn app_flush(&mut self, id: u32, waker: &Waker) -> Option<io::Result<()>> {
        let session_error = self.end().map(SessionEnd::error);
        let stream = match self.streams.get_mut(&id) {
            Some(stream) => stream,
            None => return Some(Err(stream_gone())),
        };
        if let Some(ended) = sent_or_lost(&stream.send) {
            return Some(ended);
        }
        if stream.send_buf.is_empty() && stream.syn.is_none() {
            return Some(Ok(()));
        }
        if let Some(err) = session_error {
            return Some(Err(err));
        }
        stream.write_waker = Some(waker.clone());
        None
    }

    /// Half-closes stream `id`: FIN follows the bytes already written. Ready once FIN is encoded.
    pub(crate) fn app_close(&mut self, id: u32, waker: &Waker) -> Option<io::Result<()>> {
        let session_error = self.end().map(SessionEnd::error);
        let stream = match self.streams.get_mut(&id) {
            Some(stream) => stream,
            None => return Some(Err(stream_gone())),
        };
        match &stream.send {
            SendState::Open => {
                stream.send = SendState::FinQueued;
                self.schedule_data(id);
            }
            SendState::FinSent => return Some(Ok(())),
            SendState::FinQueued => {}
            // Ended otherwise: fine if nothing written was lost.
            ended => return sent_or_lost(ended),
        }
        if let Some(err) = session_error {
            return Some(Err(err));
        }
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.write_waker = Some(waker.clone());
        }
        None
    }

    /// Aborts stream `id` in both directions; the peer sees `reason`.
    pub(crate) fn app_abort(&mut self, id: u32, reason: &str) {
        let mut end = reason.len().min(MAX_BODY);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let reason = if end == 0 { "aborted" } else { &reason[..end] };
        tracing::debug!(id, reason, "stream aborted");
        self.reset_stream(id, Some(reason), &format!("aborted locally: {reason}"));
    }

    /// Resets stream `id` in both directions: what it holds either way is discarded, and its
    /// operations fail with `local`. The peer gets a FIN with `wire` as the reason while either
    /// direction is open to it (`None`: the peer has ended the session and hears nothing).
    pub(super) fn reset_stream(&mut self, id: u32, wire: Option<&str>, local: &str) {
        let peer_is_smolmux = self.peer_is_smolmux;
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let local = ResetReason::new(local.to_owned());
        let tell_peer = match &stream.send {
            SendState::Open
            | SendState::FinQueued
            | SendState::StopQueued(_)
            | SendState::StallQueued(_) => true,
            // Our direction is done, but a smolmux peer's may still be open: the abort ends it.
            SendState::FinSent | SendState::Done(SendEnd::Stopped(_)) => {
                peer_is_smolmux && !stream.remote_done()
            }
            SendState::AbortQueued(_) | SendState::Done(_) => false,
        };
        match wire {
            Some(wire) if tell_peer => {
                stream.send = SendState::AbortQueued(Box::new(QueuedAbort {
                    wire: Bytes::copy_from_slice(wire.as_bytes()),
                    reason: local.clone(),
                }));
            }
            None if !stream.local_done() => {
                stream.syn = None;
                stream.stop_owed = false;
                stream.send = SendState::Done(SendEnd::Reset(local.clone()));
            }
            _ => {}
        }
        self.send_buffered -= stream.send_buf.len();
        stream.send_buf.clear();
        self.recv_buffered -= stream.discard_received();
        if !matches!(stream.recv, RecvState::Reset(_)) {
            stream.recv = RecvState::Reset(local);
        }
        stream.wake_all(&mut self.wake);
        if self.dialect.flow() == Flow::ByteWindow {
            // smux has no reset: the peer may write on, and what was discarded counts as read.
            self.consider_upd(id);
        }
        self.schedule_data(id);
        self.wake_reader_if_room();
        self.maybe_remove(id);
    }

    /// The handle of stream `id` is gone: FIN follows its written bytes, a smolmux peer is told
    /// to stop sending, and data still arriving is discarded.
    pub(crate) fn app_drop(&mut self, id: u32, now: Instant) {
        self.app_drop_reader(id);
        self.app_drop_writer(id);
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.handles = Handles::Dropped;
        self.maybe_remove(id);
        self.start_deadline_if_abandoned(now);
        self.progress();
    }

    /// Nothing will read stream `id` any more: what it holds and what still arrives is
    /// discarded, and a smolmux peer is told to stop sending.
    pub(crate) fn app_drop_reader(&mut self, id: u32) {
        let peer_is_smolmux = self.peer_is_smolmux;
        let Some(stream) = self
            .streams
            .get_mut(&id)
            .filter(|stream| !stream.handles.reader_dropped())
        else {
            return;
        };
        stream.handles = Handles::ReaderDropped;
        stream.read_waker = None;
        // A picomux peer takes our FIN as the end of both directions; a smolmux peer needs
        // telling, or it would write on into a stream nobody reads.
        stream.stop_owed = peer_is_smolmux && matches!(stream.recv, RecvState::Open);
        self.recv_buffered -= stream.discard_received();
        if self.dialect.flow() == Flow::ByteWindow {
            // What was discarded counts as read: a smux peer must not wait for the window.
            self.consider_upd(id);
        }
        self.schedule_data(id);
        self.wake_reader_if_room();
    }

    /// Nothing will write to stream `id` any more: FIN follows its written bytes.
    pub(crate) fn app_drop_writer(&mut self, id: u32) {
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.write_waker = None;
        }
        self.queue_fin(id);
    }

    /// The peer turned out to speak smolmux: the streams dropped before we knew, while its
    /// direction is open, still owe it a STOP_SENDING.
    pub(super) fn owe_stop_sending_to_dropped_streams(&mut self) {
        let owed: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, stream)| {
                stream.handles.reader_dropped() && matches!(stream.recv, RecvState::Open)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in owed {
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.stop_owed = true;
            }
            self.schedule_data(id);
        }
    }

    /// Ends our direction of stream `id` after its queued bytes, if it is still open.
    pub(super) fn queue_fin(&mut self, id: u32) {
        if let Some(stream) = self.streams.get_mut(&id) {
            if matches!(stream.send, SendState::Open) {
                stream.send = SendState::FinQueued;
            }
        }
        self.schedule_data(id);
    }

    pub(super) fn maybe_remove(&mut self, id: u32) {
        let Some(stream) = self.streams.get(&id) else {
            return;
        };
        if stream.handles.all_dropped() && stream.local_done() && stream.remote_done() {
            let mut stream = self.streams.remove(&id).expect("found above");
            self.forget_unacked(&stream);
            self.send_buffered -= stream.send_buf.len();
            self.recv_buffered -= stream.discard_received();
            tracing::debug!(id, "stream closed");
            self.open_room_changed();
            self.progress();
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            open_streams: self.streams.len(),
            pending_accept: self.accept_queue.len(),
            recv_buffered_bytes: self.recv_buffered,
            send_buffered_bytes: self.send_buffered,
        }
    }
}
