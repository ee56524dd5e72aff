//! How a session ends: its phases, the GOAWAY and BYE signals between smolmux peers, the close
//! deadline, and the end itself. `docs/protocol.md` ("How streams and sessions end") has the
//! table of every phase and event.
//!
//! ```text
//!              Mux::close, the last Mux handle dropped, or the peer's GOAWAY
//!  Open ─────────────────────────────────────────────────────────────────────▶ Draining
//!  Draining ──every stream done both ways and GOAWAYs crossed (smolmux peer),
//!             or our FINs all out (picomux peer), or close_timeout passed ─────▶ Finishing
//!  Finishing ──our last frames out (then BYE, and the peer's BYE read, with a
//!              smolmux peer): the write half closes ───────────────────────────▶ Ended
//!  Finishing ──write half closed, a picomux peer has not closed its own ───────▶ WriteClosed
//!  WriteClosed ──the peer's EOF, or no handle and no stream left ──────────────▶ Ended
//!  any ──protocol or I/O error, ping timeout, the peer's EOF, driver dropped ──▶ Ended
//! ```
//!
//! Between smolmux peers the session ends without the connection's end (GOAWAY, then BYE from
//! both sides once every stream is done), so a transport whose `close` does not shut the socket
//! down (async-std's) ends too, and neither side closes the connection while the other may still
//! send. A picomux peer knows neither signal: there the write half closes once our FINs are out,
//! and the session ends at the peer's EOF.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use super::{Handles, RecvState, Session};
use crate::frame::ProtocolError;

/// Where the session is in its life (see the module documentation).
#[derive(Debug)]
pub(crate) enum Phase {
    /// Streams are opened and accepted both ways.
    Open,
    /// No new streams either way; the streams in use finish.
    Draining(Drain),
    /// Every stream is done, or the close deadline passed: our last frames go out, then the
    /// connection's write half is closed.
    Finishing(Finish),
    /// Our write half is closed; a picomux peer has yet to close its own.
    WriteClosed,
    /// Nothing more happens; every operation fails with the cause.
    Ended(SessionEnd),
}

#[derive(Debug)]
pub(crate) struct Drain {
    /// We are closing (`Mux::close`, or every `Mux` handle is gone), not only the peer: if the
    /// connection ends meanwhile, our FINs still go out before the session ends.
    local: bool,
    /// When the streams still open are aborted and the session ends.
    deadline: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct Finish {
    /// Do not wait for the peer's BYE: the close deadline passed, or the connection ended.
    hard: bool,
    /// We closed (see [`Drain::local`]), not only the peer.
    local: bool,
}

/// The signals that end a session between smolmux peers, each sent and received at most once.
#[derive(Debug, Default)]
pub(crate) struct Farewell {
    pub(crate) goaway_sent: bool,
    pub(crate) goaway_received: bool,
    pub(crate) bye_sent: bool,
    pub(crate) bye_received: bool,
}

/// Why and how the session ended.
#[derive(Clone, Debug)]
pub(crate) struct SessionEnd {
    kind: io::ErrorKind,
    message: Arc<str>,
    /// An orderly end (the peer closed the connection, or we shut down): the driver resolves
    /// `Ok(())`, while operations still pending get the error.
    clean: bool,
    /// Ended by our own graceful close: `Mux::close` succeeds.
    closed: bool,
}

impl SessionEnd {
    pub(crate) fn error(&self) -> io::Error {
        io::Error::new(self.kind, self.message.to_string())
    }

    pub(crate) fn is_clean(&self) -> bool {
        self.clean
    }
}

impl Session {
    /// How the session ended, if it has.
    pub(crate) fn end(&self) -> Option<&SessionEnd> {
        match &self.phase {
            Phase::Ended(end) => Some(end),
            _ => None,
        }
    }

    pub(super) fn check_alive(&self) -> io::Result<()> {
        match self.end() {
            Some(end) => Err(end.error()),
            None => Ok(()),
        }
    }

    /// Whether new streams may be opened and accepted.
    pub(super) fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open)
    }

    /// Why no new stream may be opened or accepted now that the session drains.
    pub(super) fn draining_error(&self) -> io::Error {
        let message = if self.farewell.goaway_received && !self.closing_locally() {
            "the peer is closing the session: no new streams"
        } else {
            "session is closing: no new streams"
        };
        io::Error::new(io::ErrorKind::NotConnected, message)
    }

    fn closing_locally(&self) -> bool {
        match &self.phase {
            Phase::Draining(drain) => drain.local,
            Phase::Open => false,
            _ => true,
        }
    }

    /// Ends the session with an error: every waiter is woken and every later operation fails.
    pub(crate) fn fail(&mut self, kind: io::ErrorKind, message: impl Into<String>) {
        self.finish(kind, message.into(), false, false);
    }

    /// The connection failed. After the peer's BYE that is only its end of the connection
    /// going away (it sent its last frame and may close at once, as it does when its close
    /// deadline passes): the session ends as closed. Otherwise it ends with the error.
    pub(crate) fn on_io_error(&mut self, kind: io::ErrorKind, message: String) {
        if self.farewell.bye_received {
            tracing::debug!(%message, "connection failed after the peer's BYE");
            self.end_closed();
        } else if self.finishing_the_peers_drain() {
            // A yamux peer's GoAway(0) drained the session and every stream is done both
            // ways: the peer may close the connection as soon as it has our FINs, before our
            // last frames (our GoAway, the write half's close) reach it. Nothing is lost.
            tracing::debug!(%message, "connection ended after the peer's drain");
            self.end_cleanly(
                io::ErrorKind::ConnectionAborted,
                "connection closed by peer",
            );
        } else {
            self.fail(kind, message);
        }
    }

    /// Ends the session in an orderly way (the driver resolves `Ok`); operations still pending
    /// get `kind` and `message`.
    pub(crate) fn end_cleanly(&mut self, kind: io::ErrorKind, message: &str) {
        self.finish(kind, message.into(), true, false);
    }

    /// Ends the session as our graceful close meant it to end.
    fn end_closed(&mut self) {
        self.finish(
            io::ErrorKind::NotConnected,
            "session closed".into(),
            true,
            true,
        );
    }

    fn finish(&mut self, kind: io::ErrorKind, message: String, clean: bool, closed: bool) {
        if self.end().is_some() {
            return;
        }
        if clean {
            tracing::debug!(%message, "session ended");
        } else if kind == io::ErrorKind::InvalidData {
            tracing::warn!(%message, "session ended: the peer broke the protocol");
        } else {
            tracing::info!(%message, ?kind, "session ended with an error");
        }
        self.phase = Phase::Ended(SessionEnd {
            kind,
            message: message.into(),
            clean,
            closed,
        });
        for stream in self.streams.values_mut() {
            stream.wake_all(&mut self.wake);
        }
        self.wake.extend(self.writer_waker.take());
        self.wake.extend(self.reader_waker.take());
        self.wake.extend(self.timer_waker.take());
        self.notify_accept = true;
        self.notify_state = true;
        self.notify_open = true;
    }

    /// No new streams either way from now on. `local`: we are closing, not only the peer.
    fn begin_drain(&mut self, local: bool) {
        match &mut self.phase {
            Phase::Open => {
                tracing::debug!(local, "session draining");
                self.phase = Phase::Draining(Drain {
                    local,
                    deadline: None,
                });
                // Acceptors waiting for a stream that will not come, and openers waiting for
                // room that will not come, must look.
                self.notify_accept = true;
                self.notify_open = true;
            }
            Phase::Draining(drain) => drain.local |= local,
            _ => {}
        }
        self.wake_writer();
    }

    /// Starts the close deadline, unless it runs already.
    fn start_close_deadline(&mut self, now: Instant) {
        let close_timeout = self.config.close_timeout;
        if let Phase::Draining(drain) = &mut self.phase {
            if drain.deadline.is_none() {
                // Too far to add to the clock means never.
                drain.deadline = now.checked_add(close_timeout);
                self.wake.extend(self.timer_waker.take());
            }
        }
    }

    /// Graceful close (`Mux::close`): no new streams either way, FIN every stream after its
    /// queued bytes, and end once every stream is done (or `close_timeout` has passed).
    pub(crate) fn app_close_session(&mut self, now: Instant) {
        if self.end().is_some() {
            // Streams left in the backlog by an orderly end are not wanted any more.
            self.refuse_unaccepted();
            return;
        }
        self.begin_drain(true);
        self.start_close_deadline(now);
        self.refuse_unaccepted();
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            self.queue_fin(id);
        }
        self.progress();
    }

    /// Every `Mux` handle is gone: no new streams, the unaccepted ones are refused, and the
    /// session ends once the streams still in use are done.
    pub(crate) fn app_drop_mux(&mut self, now: Instant) {
        self.mux_dropped = true;
        if self.end().is_some() {
            return;
        }
        self.begin_drain(true);
        self.refuse_unaccepted();
        self.start_deadline_if_abandoned(now);
        self.progress();
    }

    /// Once no `Mux` and no `Stream` handle is left, nobody can finish the streams still open
    /// but the peer: the close deadline bounds how long it may take.
    pub(super) fn start_deadline_if_abandoned(&mut self, now: Instant) {
        if self.mux_dropped
            && self
                .streams
                .values()
                .all(|stream| stream.handles.all_dropped())
        {
            self.start_close_deadline(now);
        }
    }

    /// Aborts the streams waiting to be accepted: the application will never see them.
    fn refuse_unaccepted(&mut self) {
        while let Some((id, _)) = self.accept_queue.pop_front() {
            if self.end().is_some() {
                // Nothing goes on the wire any more: just forget the stream.
                if let Some(mut stream) = self.streams.remove(&id) {
                    self.recv_buffered -= stream.discard_received();
                    self.send_buffered -= stream.send_buf.len();
                }
                continue;
            }
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.handles = Handles::Dropped;
            }
            let why = "stream refused: session closing";
            self.reset_stream(id, Some(why), why);
        }
    }

    /// The peer's GOAWAY: it opens no more streams and accepts none of ours.
    pub(super) fn on_goaway(&mut self) {
        if !self.farewell.goaway_received {
            tracing::debug!("GOAWAY received");
            self.farewell.goaway_received = true;
            self.begin_drain(false);
        }
    }

    /// The peer's BYE: its last frame.
    pub(super) fn on_bye(&mut self) -> Result<(), ProtocolError> {
        if !self.farewell.goaway_received {
            return Err(ProtocolError("BYE before GOAWAY".into()));
        }
        tracing::debug!("BYE received");
        self.farewell.bye_received = true;
        // The peer sends nothing more: no PONG will answer our PING, and what it has not
        // finished it never will.
        self.liveness.ping_sent_at = None;
        let unfinished: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, stream)| matches!(stream.recv, RecvState::Open))
            .map(|(id, _)| *id)
            .collect();
        for id in unfinished {
            self.reset_stream(id, None, "the peer ended the session");
        }
        self.wake_writer();
        Ok(())
    }

    /// Whether every stream is done as far as ending the session goes: both ways and with the
    /// GOAWAYs crossed (a smolmux peer: then no SYN can still be on its way), both ways (a
    /// smux peer), or our side of each (a picomux peer treats our FIN as the end of the whole
    /// stream).
    fn streams_finished(&self) -> bool {
        if !self.refusals.is_empty() || !self.peer_pinged {
            return false;
        }
        if self.peer_is_smolmux {
            self.farewell.goaway_sent
                && self.farewell.goaway_received
                && self
                    .streams
                    .values()
                    .all(|stream| stream.local_done() && stream.remote_done())
        } else if self.dialect.fin_half_closes(false) {
            // smux: a FIN ends one direction only, so the peer may still be sending; many Go
            // programs close their whole session once the connection's read side ends.
            self.streams
                .values()
                .all(|stream| stream.local_done() && stream.remote_done())
        } else {
            self.streams.values().all(|stream| stream.local_done())
        }
    }

    /// Moves the session's end along after anything that may have finished a stream.
    pub(super) fn progress(&mut self) {
        match &self.phase {
            Phase::Draining(drain) if self.streams_finished() => {
                tracing::debug!("every stream done: session finishing");
                let local = drain.local;
                self.phase = Phase::Finishing(Finish { hard: false, local });
                self.wake_writer();
            }
            Phase::WriteClosed if self.mux_dropped && self.streams.is_empty() => {
                self.end_closed();
            }
            _ => {}
        }
    }

    /// Whether a GOAWAY (yamux: GoAway(0)) should go now: we drain, the peer understands it,
    /// and the SYNs of the streams we opened before are out (the peer refuses a SYN that
    /// follows our GOAWAY).
    pub(super) fn goaway_due(&self) -> bool {
        (self.peer_is_smolmux || self.dialect.is_yamux())
            && !self.farewell.goaway_sent
            && matches!(self.phase, Phase::Draining(_) | Phase::Finishing(_))
            && self.streams.values().all(|stream| stream.syn.is_none())
    }

    /// Whether our BYE should go now: the session is finishing, every other frame is out, and
    /// the peer understands it.
    pub(super) fn bye_due(&self) -> bool {
        self.peer_is_smolmux
            && self.farewell.goaway_sent
            && !self.farewell.bye_sent
            && matches!(self.phase, Phase::Finishing(_))
            && self.data_queue.is_empty()
            && self.refusals.is_empty()
    }

    /// Whether our BYE has gone: after it we send nothing (no PING, no PONG).
    pub(super) fn silent(&self) -> bool {
        self.farewell.bye_sent
    }

    /// Whether the writer should close the connection's write half now: the session is
    /// finishing and everything to send has been encoded.
    pub(crate) fn should_close_write(&self) -> bool {
        let Phase::Finishing(finish) = &self.phase else {
            return false;
        };
        let all_out = self.data_queue.is_empty()
            && self.refusals.is_empty()
            && self.streams.values().all(|stream| stream.local_done());
        let farewell_done = !self.peer_is_smolmux
            || (self.farewell.bye_sent && (self.farewell.bye_received || finish.hard));
        all_out && farewell_done
    }

    /// The write half is closed: the session ends, unless a picomux peer has yet to close.
    pub(crate) fn on_write_closed(&mut self) {
        let Phase::Finishing(finish) = &self.phase else {
            return;
        };
        self.notify_state = true;
        if finish.hard
            || self.farewell.bye_received
            || (self.mux_dropped && self.streams.is_empty())
        {
            self.end_closed();
        } else {
            self.phase = Phase::WriteClosed;
        }
    }

    /// Whether every stream is done after a drain the peer began, not we (only a yamux peer
    /// begins one without the smolmux BYE that follows).
    fn finishing_the_peers_drain(&self) -> bool {
        matches!(&self.phase, Phase::Finishing(finish) if !finish.local) && !self.peer_is_smolmux
    }

    /// The connection reached end-of-file at a frame boundary. If we are closing, the session
    /// ends once our own last frames are out; otherwise it ends now.
    pub(crate) fn on_eof(&mut self) {
        match &mut self.phase {
            Phase::Draining(drain) if drain.local => {
                self.phase = Phase::Finishing(Finish {
                    hard: true,
                    local: true,
                });
                self.wake_writer();
            }
            Phase::Finishing(finish) if !finish.local && !self.peer_is_smolmux => self.end_cleanly(
                io::ErrorKind::ConnectionAborted,
                "connection closed by peer",
            ),
            Phase::Finishing(finish) => {
                finish.hard = true;
                self.wake_writer();
            }
            Phase::WriteClosed => self.end_closed(),
            _ => self.end_cleanly(
                io::ErrorKind::ConnectionAborted,
                "connection closed by peer",
            ),
        }
    }

    /// The close deadline, while one runs.
    pub(super) fn close_deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Draining(drain) => drain.deadline,
            _ => None,
        }
    }

    /// The close deadline passed at `now`: abort the streams still open and finish.
    pub(super) fn on_close_deadline(&mut self, now: Instant) {
        if self.close_deadline().is_none_or(|at| now < at) {
            return;
        }
        let unfinished: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, stream)| !(stream.local_done() && stream.remote_done()))
            .map(|(id, _)| *id)
            .collect();
        let reason = format!(
            "session closed: close_timeout ({:?}) passed before the stream finished",
            self.config.close_timeout
        );
        tracing::debug!(streams = unfinished.len(), "close_timeout passed");
        self.aborted_at_close += unfinished.len();
        for id in unfinished {
            self.reset_stream(id, Some(&reason), &reason);
        }
        self.phase = Phase::Finishing(Finish {
            hard: true,
            local: self.closing_locally(),
        });
        self.wake_writer();
    }

    /// What `Mux::close` returns, once it is known.
    pub(crate) fn close_outcome(&self) -> Option<io::Result<()>> {
        match &self.phase {
            Phase::WriteClosed => Some(Ok(())),
            Phase::Ended(end) if end.closed && self.aborted_at_close > 0 => {
                Some(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "close_timeout ({:?}) passed: {} streams still open were aborted",
                        self.config.close_timeout, self.aborted_at_close
                    ),
                )))
            }
            Phase::Ended(end) if end.closed => Some(Ok(())),
            Phase::Ended(end) => Some(Err(end.error())),
            _ => None,
        }
    }
}
