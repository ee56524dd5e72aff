//! Stream credits: how many streams each side may open, so that a burst of opens waits instead
//! of being refused (in the spirit of QUIC's MAX_STREAMS).
//!
//! Between smolmux peers, each side may open [`INITIAL_STREAM_CREDITS`] streams at the start of
//! the session without being told; the acceptor then grants more with the STREAMS signal
//! (`Signal::MoreStreams`) as its application accepts them and its streams close, never more
//! than its accept backlog and `max_streams` can take at that moment. An opener that has used
//! its credits waits in `Mux::open` until more come (`Mux::try_open` fails instead). A picomux
//! peer grants nothing and refuses nothing it can be told about: towards it only `max_streams`
//! limits our opens.

use super::Session;
use crate::frame::Signal;
use crate::transmit::Transmit;

/// Streams either side may open before the peer has granted any: as many as picomux's accept
/// queue holds, so that a burst at the start of a session towards either kind of peer fits
/// (an acceptor whose `accept_backlog` or `max_streams` is smaller may still refuse some).
pub(crate) const INITIAL_STREAM_CREDITS: u64 = 100;

/// Counts of the streams one side has opened and may open, over the whole session.
#[derive(Debug)]
pub(crate) struct StreamCredits {
    /// Streams opened so far (every SYN, refused ones included).
    pub(crate) opened: u64,
    /// Streams that may be opened in all: the initial credits plus every grant.
    pub(crate) allowed: u64,
}

impl Default for StreamCredits {
    fn default() -> Self {
        StreamCredits {
            opened: 0,
            allowed: INITIAL_STREAM_CREDITS,
        }
    }
}

impl StreamCredits {
    fn left(&self) -> u64 {
        self.allowed.saturating_sub(self.opened)
    }
}

impl Session {
    /// Whether we may open a stream now: the peer's stream credits (a smolmux peer, or one not
    /// known yet) and our own `max_streams` allow it.
    pub(super) fn may_open(&self) -> bool {
        let credited = (self.peer_pinged && !self.peer_is_smolmux) || self.ours.left() > 0;
        credited && self.streams.len() < self.config.max_streams && self.unacked_room()
    }

    /// The peer opened a stream (whether or not we take it): one of its credits is used.
    pub(super) fn count_peer_open(&mut self) {
        self.theirs.opened += 1;
    }

    /// The peer granted us `count` more streams.
    pub(super) fn on_more_streams(&mut self, count: u32) {
        self.ours.allowed = self.ours.allowed.saturating_add(count.into());
        self.notify_open = true;
    }

    /// A stream slot freed, or the peer turned out to be picomux: waiting opens must look.
    pub(super) fn open_room_changed(&mut self) {
        self.notify_open = true;
        self.consider_stream_grant();
    }

    /// How many more streams the peer may open: what the accept backlog and `max_streams` can
    /// take now, less what it may already open.
    fn stream_grant(&self) -> u64 {
        if !self.peer_is_smolmux || !self.is_open() {
            return 0;
        }
        let backlog_room = self
            .config
            .accept_backlog
            .saturating_sub(self.accept_queue.len());
        let table_room = self.config.max_streams.saturating_sub(self.streams.len());
        let room = backlog_room.min(table_room) as u64;
        room.saturating_sub(self.theirs.left())
    }

    /// The grant to send now, if it is worth a frame: a quarter of the backlog's worth, or the
    /// last credits the peer could have.
    fn due_stream_grant(&self) -> Option<u64> {
        let grant = self.stream_grant();
        let worth = (self.config.accept_backlog.min(self.config.max_streams) as u64 / 4).max(1);
        (grant >= worth || (grant > 0 && self.theirs.left() == 0)).then_some(grant)
    }

    /// Wakes the writer if a STREAMS grant is due.
    pub(super) fn consider_stream_grant(&mut self) {
        if self.due_stream_grant().is_some() {
            self.wake_writer();
        }
    }

    /// Encodes a STREAMS grant if one is due.
    pub(super) fn encode_stream_grant(&mut self, out: &mut Transmit) -> bool {
        let Some(grant) = self.due_stream_grant() else {
            return false;
        };
        let grant = u32::try_from(grant).unwrap_or(u32::MAX);
        self.theirs.allowed += u64::from(grant);
        tracing::trace!(grant, "STREAMS sent");
        out.encode(|b| Signal::MoreStreams(grant).encode_frame(b, 0));
        true
    }
}
