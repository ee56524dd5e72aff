//! The protocol logic of one session, with no I/O: the stream table, credits and byte accounting,
//! liveness, limits and the fair send scheduler.
//!
//! The driver feeds it received frames ([`Session::on_frame`]) and the time
//! ([`Session::on_timeout`]), and asks it for bytes to send ([`Session::poll_transmit`]). The
//! user-facing handles call the `app_*` methods. Every method runs under the session lock and only
//! records which tasks to wake (in [`Session::take_wakers`]); the caller wakes them after unlocking.
//!
//! Stream lifecycle, per direction (the session's own is in [`lifecycle`]):
//!
//! ```text
//!  send:  Open ──close()/drop──▶ FinQueued ──queued bytes out, FIN encoded──▶ FinSent
//!           │                       │
//!           ├──peer's STOP_SENDING──┴──▶ StopQueued ──FIN encoded──▶ Done(Stopped)
//!           ├──picomux peer's FIN────────────────────────────────────▶ Done(PeerClosed)
//!           └──abort(), either side, any state before both are done──▶ AbortQueued
//!                                           ──FIN+reason encoded──▶ Done(Reset)
//!  recv:  Open ──FIN──▶ Finished (EOF after buffered bytes)
//!           └──abort, either side, also after FIN; receive budget overflow──▶ Reset
//! ```
//!
//! Dropping the handle also sends STOP_SENDING to a smolmux peer while its direction is open.
//! A stream leaves the table once its handle is gone, our side has sent its FIN, and the peer's
//! side has finished or been reset.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};

use crate::config::Config;
use crate::fifo::Fifo;
use crate::frame::{
    encode_frame, Command, Header, PingInfo, ProtocolError, Signal, INITIAL_CREDITS, MAX_BODY,
};
use crate::send_buffer::{ChunkPool, SendBuffer};
use crate::stats::Stats;
use crate::transmit::Transmit;

mod admission;
mod lifecycle;

use admission::StreamCredits;
pub(crate) use lifecycle::SessionEnd;
use lifecycle::{Farewell, Phase};

/// Most refusals (FIN answers to SYNs we cannot take) waiting to be sent; past it the driver stops
/// reading the connection until the writer catches up, so a SYN flood costs bounded memory.
const MAX_PENDING_REFUSALS: usize = 4096;

/// PSH bodies at least this long are sent as shared slices of the send buffer instead of being
/// copied into the write batch.
const SHARED_BODY_MIN: usize = 2048;

/// Once the streams together hold this many `stream_send_buffer`s of bytes from `write`, each
/// stream buffers at most [`CROWDED_SEND_BUFFER`]: streams writing at once share the connection,
/// so a full buffer each would only hold memory (4 MiB for 32 bulk streams at the default). One
/// stream, or a few, keep the whole `stream_send_buffer`.
const CROWDED_SEND_BUFFERS: usize = 4;

/// What a stream may buffer from `write` while the session's send buffers are crowded: a full
/// frame (never more than `stream_send_buffer`). It does not depend on the other streams, so
/// none waits for another's buffer to drain, even one whose peer has stopped reading.
const CROWDED_SEND_BUFFER: usize = 64 << 10;

/// While streams exchange small messages, bulk streams send frames of at most
/// `max_frame_body / INTERLEAVED_FRAME_DIVISOR` bytes: the protocol lets a stream keep at least 10
/// frames in flight, and a message sent by another stream waits behind all of them (640 KiB of
/// 64 KiB frames). A PSH that empties its stream's buffer and is smaller than this fraction of
/// `max_frame_body` counts as a message, unless it is the tail of a burst (the stream's previous
/// PSH left bytes queued): else a bulk stream's own tails would hide the other streams' messages.
const INTERLEAVED_FRAME_DIVISOR: usize = 4;

/// How many PSH frames after another stream's last message bulk streams keep their frames small.
const MESSAGE_MEMORY: u64 = 128;

/// While both messages and our own bulk frames flow, a PING is kept in flight: its round trip
/// measures the queue the bulk frames build ahead of the messages. Once it has been out longer
/// than twice the smallest RTT plus this allowance, bulk frames wait (messages, SYNs and FINs
/// still go) until its PONG shows the queue drained. Without bulk frames there is no queue of
/// ours to drain, and no PING: it would cost each message a PING and a PONG.
const QUEUE_ALLOWANCE: Duration = Duration::from_millis(1);

/// Bulk frames wait at most this many queue limits for a PONG, so a peer that never answers
/// PINGs (with `ping_interval` off, nothing else would end the wait) only slows them down.
const MAX_HOLD_FACTOR: u32 = 10;

/// PINGs sent back to back at the start of a session to measure the path's round trip.
const STARTUP_RTT_SAMPLES: u8 = 3;

/// How the reason of every refusal starts, on the wire and in the opener's errors.
const REFUSED: &str = "stream refused";

/// Why a stream is reset when its unread data would pass `session_receive_buffer`.
const RECEIVE_BUDGET_EXCEEDED: &str =
    "receive buffer full: the application did not read this stream in time (session_receive_buffer reached)";

/// Most streams the peer may abort before the application accepts them, net of the streams the
/// application does accept. Such streams are dropped from the backlog unseen; a peer that keeps
/// opening and resetting streams (the HTTP/2 "rapid reset" attack) ends the session.
const MAX_EARLY_RESETS: u32 = 1000;

#[derive(Debug)]
enum SendState {
    Open,
    FinQueued,
    FinSent,
    /// The peer asked us to stop sending: what was queued (this many bytes) is discarded, and
    /// an empty FIN goes out next.
    StopQueued(usize),
    /// `abort()` was called: a FIN with the reason goes out next. Boxed, as it is rare and
    /// every stream state has room for the largest variant.
    AbortQueued(Box<QueuedAbort>),
    /// Nothing more will be sent.
    Done(SendEnd),
}

#[derive(Debug)]
struct QueuedAbort {
    /// The FIN's body: the reason as the peer sees it.
    wire: Bytes,
    /// What local operations fail with.
    reason: ResetReason,
}

/// Why a stream was aborted, shared by both directions' states. An `Arc<String>` is a thin
/// pointer, where an `Arc<str>` would take 16 bytes and make each state 8 bytes larger.
type ResetReason = Arc<String>;

/// Why nothing more will be sent on a stream.
#[derive(Debug)]
enum SendEnd {
    /// A picomux peer's FIN ended both directions; this many queued bytes were discarded.
    PeerClosed(usize),
    /// The peer stopped reading (STOP_SENDING); this many queued bytes were discarded.
    Stopped(usize),
    /// Either side aborted the stream.
    Reset(ResetReason),
}

/// Which of the application's handles of a stream are gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handles {
    /// The `Stream`, or both of its halves, are held.
    Held,
    /// The read half is gone: received data is discarded and credited back at once.
    ReaderDropped,
    /// Every handle is gone.
    Dropped,
}

impl Handles {
    fn reader_dropped(self) -> bool {
        self != Handles::Held
    }

    fn all_dropped(self) -> bool {
        self == Handles::Dropped
    }
}

/// The next frame a stream wants to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DataFrame {
    Syn,
    StopSending,
    Psh,
    Fin,
}

#[derive(Debug)]
enum RecvState {
    Open,
    Finished,
    Reset(ResetReason),
}

#[derive(Debug)]
struct StreamState {
    /// Metadata of a stream we opened, until its SYN is encoded (boxed: most streams are idle
    /// long after it is gone).
    syn: Option<Box<Bytes>>,
    send: SendState,
    send_buf: SendBuffer,
    /// Credits the peer granted us: PSH frames we may still send.
    send_credits: u32,
    recv: RecvState,
    /// Received data not yet read, front first (a frame the application has begun reading is
    /// advanced past what it read).
    recv_queue: Fifo<Bytes>,
    /// Credits the peer still holds on this stream: PSH frames it may still send us.
    peer_credits: u32,
    /// Target of `peer_credits + recv_queue.len()`: the receive window in frames. It is the
    /// stream's whole receive buffer, except while the peer interleaves this stream with other
    /// streams' messages, when it is the initial 10 frames (see [`Session::on_psh`]).
    window: u32,
    /// In `grant_queue`, waiting for a MORE.
    grant_scheduled: bool,
    /// In `data_queue`, waiting for a SYN, PSH or FIN to be encoded.
    data_scheduled: bool,
    /// Which of the user's handles are gone (one state, not two flags, to keep the stream
    /// state within its 128-byte allocation class).
    handles: Handles,
    /// A STOP_SENDING is to go (after the SYN): the handle is gone, the peer still sends.
    stop_owed: bool,
    /// The session's `read_tick` at the stream's latest read (or its creation): the stream
    /// read longest ago is reset first when the receive budget overflows.
    last_read: u32,
    /// Our latest PSH on this stream left bytes queued: the PSH that empties the queue next is
    /// the tail of a burst, not a message.
    mid_burst: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl StreamState {
    fn new(syn: Option<Box<Bytes>>, window: u32, last_read: u32) -> Self {
        StreamState {
            syn,
            send: SendState::Open,
            send_buf: SendBuffer::default(),
            send_credits: INITIAL_CREDITS,
            recv: RecvState::Open,
            recv_queue: Fifo::default(),
            peer_credits: INITIAL_CREDITS,
            window,
            grant_scheduled: false,
            data_scheduled: false,
            handles: Handles::Held,
            stop_owed: false,
            last_read,
            mid_burst: false,
            read_waker: None,
            write_waker: None,
        }
    }

    /// Bytes received and not yet read.
    fn unread_bytes(&self) -> usize {
        self.recv_queue.iter().map(Bytes::len).sum()
    }

    /// Drops the received data not yet read; returns its length in bytes.
    fn discard_received(&mut self) -> usize {
        let mut bytes = 0;
        while let Some(unread) = self.recv_queue.pop_front() {
            bytes += unread.len();
        }
        bytes
    }

    /// Frames the peer may still bring into this stream's buffer: the credits it holds (none
    /// count once it has sent FIN) and the frames not yet read.
    fn committed_frames(&self) -> u32 {
        let credits = match self.recv {
            RecvState::Open => self.peer_credits,
            _ => 0,
        };
        credits.saturating_add(self.recv_queue.len() as u32)
    }

    /// Committed frames beyond the 10-frame floor that the protocol gives every stream.
    fn excess_frames(&self) -> u32 {
        self.committed_frames().saturating_sub(INITIAL_CREDITS)
    }

    /// Frames the peer could be granted: the window, at most `limit`, less those committed.
    fn free_window(&self, limit: u32) -> u32 {
        self.window
            .min(limit)
            .saturating_sub(self.committed_frames())
    }

    /// Whether half the window, at most `limit`, is free: time for a MORE.
    fn grant_due(&self, limit: u32) -> bool {
        let free = self.free_window(limit);
        free > 0 && free >= self.window.min(limit) / 2
    }

    /// The next frame this stream wants to send, if it can send one now.
    fn next_data_frame(&self) -> Option<DataFrame> {
        if self.syn.is_some() {
            return Some(DataFrame::Syn);
        }
        if self.stop_owed {
            return Some(DataFrame::StopSending);
        }
        match self.send {
            SendState::Open | SendState::FinQueued
                if !self.send_buf.is_empty() && self.send_credits > 0 =>
            {
                Some(DataFrame::Psh)
            }
            SendState::FinQueued if self.send_buf.is_empty() => Some(DataFrame::Fin),
            SendState::StopQueued(_) | SendState::AbortQueued(_) => Some(DataFrame::Fin),
            _ => None,
        }
    }

    fn local_done(&self) -> bool {
        self.syn.is_none()
            && !self.stop_owed
            && matches!(self.send, SendState::FinSent | SendState::Done(_))
    }

    fn remote_done(&self) -> bool {
        !matches!(self.recv, RecvState::Open)
    }

    fn wake_all(&mut self, wake: &mut Vec<Waker>) {
        wake.extend(self.read_waker.take());
        wake.extend(self.write_waker.take());
    }
}

/// Liveness bookkeeping: at most one own PING outstanding, at most one PONG owed.
#[derive(Debug)]
struct Liveness {
    interval: Option<Duration>,
    timeout: Duration,
    ping_wanted: bool,
    ping_sent_at: Option<Instant>,
    next_ping_at: Option<Instant>,
    pong_owed: bool,
    last_rtt: Option<Duration>,
    /// The smallest round trip seen: the path's delay without the queues our own traffic builds.
    min_rtt: Option<Duration>,
    /// Round trips measured so far (counting up to [`STARTUP_RTT_SAMPLES`]).
    rtt_samples: u8,
}

/// The state of one session. See the module documentation.
pub(crate) struct Session {
    config: Config,
    max_window: u32,
    /// Boxed, so that the table's spare capacity costs a pointer per slot, not a whole state.
    streams: HashMap<u32, Box<StreamState>>,
    next_id: u32,
    id_step: u32,
    peer_is_smolmux: bool,
    /// The peer's first PING has arrived, so `peer_is_smolmux` is known (smolmux and picomux
    /// both ping first): until then, how the session may end is not known either.
    peer_pinged: bool,
    accept_queue: VecDeque<(u32, Box<[u8]>)>,
    /// Streams the peer aborted before they were accepted, less streams accepted since.
    early_resets: u32,
    /// Refused SYNs to answer, with the reason the FIN carries.
    refusals: VecDeque<(u32, &'static str)>,
    data_queue: VecDeque<u32>,
    /// Bulk streams waiting for the queue ahead of messages to drain (still `data_scheduled`).
    held: Vec<u32>,
    grant_queue: VecDeque<u32>,
    liveness: Liveness,
    recv_buffered: usize,
    send_buffered: usize,
    /// Spent send-buffer chunks, for the streams' next writes.
    chunks: ChunkPool,
    /// PSH frames encoded so far.
    psh_sent: u64,
    /// `psh_sent` when the latest keepalive PING was due.
    psh_sent_at_keepalive: u64,
    /// When (in `psh_sent`) and on which stream the latest small message was encoded.
    last_message: Option<(u64, u32)>,
    /// When (in `psh_sent`) the latest PSH that was not a message was encoded.
    last_bulk: Option<u64>,
    /// The largest PSH body received: frames well below it (or below our own `max_frame_body`,
    /// from a smolmux peer) mean the peer is interleaving.
    largest_psh_received: usize,
    /// Where the session is in its life, up to its end (see [`lifecycle`]).
    phase: Phase,
    /// GOAWAY and BYE sent and received (smolmux peers).
    farewell: Farewell,
    /// Every `Mux` handle is gone.
    mux_dropped: bool,
    /// Streams aborted because `close_timeout` passed.
    aborted_at_close: usize,
    /// Counts the application's reads, wrapping (see `StreamState::last_read`): a u32 keeps
    /// the stream state within its allocation size class.
    read_tick: u32,
    /// Streams we opened and may open (see [`admission`]).
    ours: StreamCredits,
    /// Streams the peer opened and may open.
    theirs: StreamCredits,
    writer_waker: Option<Waker>,
    reader_waker: Option<Waker>,
    timer_waker: Option<Waker>,
    wake: Vec<Waker>,
    /// A stream entered the accept queue, or the session ended: acceptors must look.
    pub(crate) notify_accept: bool,
    /// The write half closed or the session ended: `Mux::close` callers must look.
    pub(crate) notify_state: bool,
    /// Stream credits came, a slot freed or the session began to end: `Mux::open` callers
    /// waiting for room must look.
    pub(crate) notify_open: bool,
}

impl Session {
    /// A new session. An invalid `config` gives a session that has already ended with that error.
    pub(crate) fn new(config: Config) -> Session {
        let invalid = config.validate().err();
        let liveness = Liveness {
            interval: config.ping_interval,
            timeout: config.ping_timeout,
            // The first PING announces smolmux's extensions and measures the first round trip.
            ping_wanted: true,
            ping_sent_at: None,
            next_ping_at: None,
            pong_owed: false,
            last_rtt: None,
            min_rtt: None,
            rtt_samples: 0,
        };
        let mut session = Session {
            max_window: config.max_stream_window(),
            config,
            streams: HashMap::new(),
            // A random start walked by an odd step visits all 2^32 ids before repeating one.
            next_id: fastrand::u32(..),
            id_step: fastrand::u32(..) | 1,
            peer_is_smolmux: false,
            peer_pinged: false,
            accept_queue: VecDeque::new(),
            early_resets: 0,
            refusals: VecDeque::new(),
            data_queue: VecDeque::new(),
            held: Vec::new(),
            grant_queue: VecDeque::new(),
            liveness,
            recv_buffered: 0,
            send_buffered: 0,
            chunks: ChunkPool::default(),
            psh_sent: 0,
            psh_sent_at_keepalive: 0,
            last_message: None,
            last_bulk: None,
            largest_psh_received: 0,
            phase: Phase::Open,
            farewell: Farewell::default(),
            mux_dropped: false,
            aborted_at_close: 0,
            read_tick: 0,
            ours: StreamCredits::default(),
            theirs: StreamCredits::default(),
            writer_waker: None,
            reader_waker: None,
            timer_waker: None,
            wake: Vec::new(),
            notify_accept: false,
            notify_state: false,
            notify_open: false,
        };
        if let Some(err) = invalid {
            session.fail(err.kind(), err.to_string());
        }
        session
    }

    /// Wakers recorded since the last call, to be woken once the lock is released.
    pub(crate) fn take_wakers(&mut self) -> Vec<Waker> {
        std::mem::take(&mut self.wake)
    }

    // ----- frames from the peer -----

    /// Handles one frame from the peer. An error is a protocol violation that ends the session.
    pub(crate) fn on_frame(
        &mut self,
        header: Header,
        body: Bytes,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        let id = header.stream_id;
        tracing::trace!(command = ?header.command, id, len = body.len(), "frame received");
        if self.farewell.bye_received {
            return Err(ProtocolError(format!(
                "{:?} frame after the peer's BYE",
                header.command
            )));
        }
        match header.command {
            Command::Syn => self.on_syn(id, &body),
            Command::Psh => self.on_psh(id, body),
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

    fn on_syn(&mut self, id: u32, metadata: &[u8]) -> Result<(), ProtocolError> {
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
            self.refusals.push_back((id, why));
            self.wake_writer();
            return Ok(());
        }
        tracing::debug!(id, "stream opened by peer");
        let window = self.max_window;
        self.streams
            .insert(id, Box::new(StreamState::new(None, window, self.read_tick)));
        self.accept_queue.push_back((id, metadata.into()));
        self.notify_accept = true;
        Ok(())
    }

    fn on_psh(&mut self, id: u32, body: Bytes) -> Result<(), ProtocolError> {
        self.largest_psh_received = self.largest_psh_received.max(body.len());
        // A smolmux peer may interleave from its first frame on, before any full frame shows
        // what full is: our own max_frame_body stands in (peers usually share a configuration).
        // Other peers never interleave, and picomux's 8 KiB frames must not pass for it.
        let full_frame = if self.peer_is_smolmux {
            self.largest_psh_received.max(self.config.max_frame_body)
        } else {
            self.largest_psh_received
        };
        let interleaved = body.len() * 2 < full_frame;
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
        self.recv_buffered += body.len();
        stream.recv_queue.push_back(body);
        self.wake.extend(stream.read_waker.take());
        // An interleaved frame means the peer is sending this stream's data beside another
        // stream's messages (see INTERLEAVED_FRAME_DIVISOR): it wants few bytes in flight ahead
        // of them. A full frame means it no longer does.
        stream.window = if interleaved {
            INITIAL_CREDITS
        } else {
            max_window
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
    fn enforce_receive_budget(&mut self) {
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

    fn on_fin(&mut self, id: u32, reason: &[u8]) -> Result<(), ProtocolError> {
        let peer_is_smolmux = self.peer_is_smolmux;
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
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
            if !peer_is_smolmux && matches!(stream.send, SendState::Open | SendState::FinQueued) {
                // A picomux peer's FIN ends both directions: bytes we sent now would be dropped.
                let lost = stream.send_buf.len();
                self.send_buffered -= lost;
                stream.send_buf.clear();
                stream.send = SendState::Done(SendEnd::PeerClosed(lost));
            }
        }
        stream.wake_all(&mut self.wake);
        self.maybe_remove(id);
        Ok(())
    }

    /// The peer aborted a stream still in the accept backlog: forget it before the application
    /// ever sees it, and end the session if the peer makes a habit of it.
    fn drop_unaccepted(&mut self, at: usize) -> Result<(), ProtocolError> {
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
    fn on_stop_sending(&mut self, id: u32) {
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

    fn on_more(&mut self, id: u32, credits: u16) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.send_credits = stream.send_credits.saturating_add(credits.into());
        self.schedule_data(id);
    }

    fn on_pong(&mut self, now: Instant) {
        let Some(sent_at) = self.liveness.ping_sent_at.take() else {
            return; // unsolicited: no PING of ours is outstanding
        };
        let rtt = now.saturating_duration_since(sent_at);
        tracing::trace!(?rtt, "PONG received");
        self.liveness.last_rtt = Some(rtt);
        self.liveness.min_rtt = Some(self.liveness.min_rtt.map_or(rtt, |min| min.min(rtt)));
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
    /// catch up (refusals). Registers `waker` to be woken when reading may resume. (A full
    /// receive budget never stops the reader: see [`Session::enforce_receive_budget`].)
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
    }

    fn wake_reader_if_room(&mut self) {
        if self.reader_waker.is_some() && !self.reader_paused() {
            self.wake.extend(self.reader_waker.take());
        }
    }

    // ----- liveness -----

    /// The next instant at which [`Session::on_timeout`] has something to do.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        let hold_deadline = match (self.held.is_empty(), self.liveness.ping_sent_at) {
            (false, Some(sent)) => self
                .queue_limit()
                .and_then(|limit| sent.checked_add(limit.saturating_mul(MAX_HOLD_FACTOR))),
            _ => None,
        };
        [
            self.ping_deadline(),
            self.liveness.next_ping_at,
            hold_deadline,
            self.close_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// When the PONG to our outstanding PING is overdue, if it can be (durations too long to
    /// add to the clock mean never).
    fn ping_deadline(&self) -> Option<Instant> {
        self.liveness.interval?;
        self.liveness
            .ping_sent_at?
            .checked_add(self.liveness.timeout)
    }

    /// Fires timers due at `now`: a PING timed out, or the next PING is due.
    pub(crate) fn on_timeout(&mut self, now: Instant) {
        if self.end().is_some() {
            return;
        }
        if self.ping_deadline().is_some_and(|at| now >= at) {
            let timeout = self.liveness.timeout;
            self.fail(
                io::ErrorKind::TimedOut,
                format!("ping timeout: no PONG from the peer within {timeout:?}"),
            );
            return;
        }
        self.on_close_deadline(now);
        if self.liveness.next_ping_at.is_some_and(|at| now >= at) {
            self.liveness.next_ping_at = None;
            self.liveness.ping_wanted = true;
            self.wake_writer();
            // A session that sent no data for a whole interval gives its spent chunks back.
            if self.psh_sent == self.psh_sent_at_keepalive {
                self.chunks.clear();
            }
            self.psh_sent_at_keepalive = self.psh_sent;
        }
        if !self.held.is_empty() && !self.queue_too_long(now) {
            // The PONG is too late to wait for: release the held streams (this also ends the
            // hold deadline, so the timer does not fire again).
            self.data_queue.extend(self.held.drain(..));
            self.wake_writer();
        }
    }

    pub(crate) fn set_timer_waker(&mut self, waker: &Waker) {
        self.timer_waker = Some(waker.clone());
    }

    pub(crate) fn last_rtt(&self) -> Option<Duration> {
        self.liveness.last_rtt
    }

    // ----- the send scheduler -----

    fn wake_writer(&mut self) {
        self.wake.extend(self.writer_waker.take());
    }

    pub(crate) fn set_writer_waker(&mut self, waker: &Waker) {
        self.writer_waker = Some(waker.clone());
    }

    fn schedule_data(&mut self, id: u32) {
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
        let hold_bulk = self.queue_too_long(now);
        if !hold_bulk {
            self.data_queue.extend(self.held.drain(..));
        }
        let was_holding = !self.held.is_empty();
        while out.len() < budget {
            if self.encode_control(out, now) {
                continue;
            }
            let Some(id) = self.data_queue.pop_front() else {
                break;
            };
            if hold_bulk && self.sends_bulk(id) {
                self.held.push(id);
                continue;
            }
            self.encode_data(id, out);
        }
        if !was_holding && !self.held.is_empty() {
            // The timer must learn the deadline that ends the hold.
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
    fn queue_too_long(&self, now: Instant) -> bool {
        let (Some(sent), Some(limit)) = (self.liveness.ping_sent_at, self.queue_limit()) else {
            return false;
        };
        let waited = now.saturating_duration_since(sent);
        self.lately_messaging().is_some()
            && waited > limit
            && waited < limit.saturating_mul(MAX_HOLD_FACTOR)
    }

    fn queue_limit(&self) -> Option<Duration> {
        self.liveness
            .min_rtt
            .map(|rtt| rtt.saturating_mul(2).saturating_add(QUEUE_ALLOWANCE))
    }

    /// Whether the next frame of stream `id` is a PSH too big to be a message.
    fn sends_bulk(&self, id: u32) -> bool {
        let message_max = self.config.max_frame_body / INTERLEAVED_FRAME_DIVISOR;
        self.streams.get(&id).is_some_and(|stream| {
            stream.next_data_frame() == Some(DataFrame::Psh) && stream.send_buf.len() >= message_max
        })
    }

    /// Encodes one control frame, if any is waiting.
    fn encode_control(&mut self, out: &mut Transmit, now: Instant) -> bool {
        if self.liveness.pong_owed {
            self.liveness.pong_owed = false;
            tracing::trace!("PONG sent");
            out.encode(|b| encode_frame(b, Command::Pong, 0, b""));
            return true;
        }
        if self.goaway_due() {
            tracing::debug!("GOAWAY sent");
            self.farewell.goaway_sent = true;
            out.encode(|b| Signal::GoAway.encode_frame(b, 0));
            return true;
        }
        if self.liveness.ping_wanted
            && self.liveness.ping_sent_at.is_none()
            && !self.farewell.bye_received
        {
            self.liveness.ping_wanted = false;
            self.liveness.ping_sent_at = Some(now);
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
            // never come); a picomux opener sees its stream end.
            tracing::trace!(id, why, "refusal sent");
            out.encode(|b| encode_frame(b, Command::Fin, id, why.as_bytes()));
            self.wake_reader_if_room();
            return true;
        }
        if self.encode_stream_grant(out) {
            return true;
        }
        while let Some(id) = self.grant_queue.pop_front() {
            let limit = self.window_limit(id);
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
    fn encode_data(&mut self, id: u32, out: &mut Transmit) {
        let max_body = self.config.max_frame_body;
        let message_max = max_body / INTERLEAVED_FRAME_DIVISOR;
        let frame_max = if self.lately_messaging().is_some_and(|sender| sender != id) {
            message_max.max(1)
        } else {
            max_body
        };
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
                out.encode(|b| encode_frame(b, Command::Syn, id, &metadata));
                // Wake a flush waiting for the SYN to go.
                self.wake.extend(stream.write_waker.take());
            }
            Some(DataFrame::Psh) => {
                // Split what is queued evenly over the fewest frames, so a 64 KiB write does
                // not cost a second credit for a 1-byte tail.
                let queued = stream.send_buf.len();
                let len = queued.div_ceil(queued.div_ceil(frame_max));
                self.psh_sent += 1;
                if len < queued || len >= message_max {
                    self.last_bulk = Some(self.psh_sent);
                } else if !stream.mid_burst {
                    self.last_message = Some((self.psh_sent, id));
                }
                stream.mid_burst = len < queued;
                tracing::trace!(id, len, "PSH sent");
                let header = Header {
                    command: Command::Psh,
                    body_len: len as u16,
                    stream_id: id,
                };
                out.encode(|b| header.encode(b));
                stream.send_buf.take(len, &mut self.chunks, |piece| {
                    if piece.len() >= SHARED_BODY_MIN {
                        out.push_shared(piece);
                    } else {
                        out.encode(|b| b.extend_from_slice(&piece));
                    }
                });
                stream.send_credits -= 1;
                self.send_buffered -= len;
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
                    _ => Bytes::new(),
                };
                out.encode(|b| encode_frame(b, Command::Fin, id, &wire));
                tracing::debug!(id, "FIN sent");
                self.wake.extend(stream.write_waker.take());
                self.maybe_remove(id);
                return;
            }
        }
        if self.queue_worth_measuring() && self.liveness.ping_sent_at.is_none() {
            // Measure the queue this frame joins (see QUEUE_ALLOWANCE).
            self.liveness.ping_wanted = true;
        }
        self.schedule_data(id);
    }

    /// Whether the PSH frame numbered `at` (in `psh_sent`) is among the last [`MESSAGE_MEMORY`].
    fn sent_lately(&self, at: u64) -> bool {
        self.psh_sent - at < MESSAGE_MEMORY
    }

    /// The stream that sent the latest small message, if it did so lately: while one does,
    /// the other streams interleave their bulk data in smaller frames.
    fn lately_messaging(&self) -> Option<u32> {
        self.last_message
            .filter(|&(at, _)| self.sent_lately(at))
            .map(|(_, sender)| sender)
    }

    /// Whether messages and bulk frames both flow lately, so that a PING should measure the
    /// queue the bulk frames build ahead of the messages (see [`QUEUE_ALLOWANCE`]).
    fn queue_worth_measuring(&self) -> bool {
        self.lately_messaging().is_some() && self.last_bulk.is_some_and(|at| self.sent_lately(at))
    }

    // ----- flow control on the receive side -----

    /// Frames that windows may hold beyond their 10-frame floors, over all streams together:
    /// half the full frames `session_receive_buffer` holds. The other half is for the floors,
    /// which the protocol gives every stream without a grant: so readers that stall with full
    /// windows cannot fill the session's buffer (which would stop every stream) unless about
    /// fifty streams are open (at the defaults: 51 × 10 frames fill half of 64 MiB).
    fn excess_budget(&self) -> usize {
        self.config.session_receive_buffer / MAX_BODY / 2
    }

    /// The most frames any stream's window may hold now: the 10-frame floor plus an even share
    /// of the [`Session::excess_budget`] among the open streams, at most `stream_receive_buffer`.
    fn window_share(&self) -> u32 {
        let share = self.excess_budget() / self.streams.len().max(1);
        let share = u32::try_from(share).unwrap_or(u32::MAX);
        INITIAL_CREDITS.saturating_add(share).min(self.max_window)
    }

    /// The most frames stream `id`'s window may hold now: its [`Session::window_share`], with
    /// beyond the floor only what the other streams' windows leave of the excess budget. (The
    /// share alone would not do: streams that were alone took more than their share.)
    fn window_limit(&self, id: u32) -> u32 {
        let share = self.window_share();
        if share <= INITIAL_CREDITS {
            // No window may pass the floor: no need to add up the others (this also bounds the
            // sum below to as many streams as the excess budget has frames).
            return INITIAL_CREDITS;
        }
        let others: usize = self
            .streams
            .iter()
            .filter(|(other, _)| **other != id)
            .map(|(_, stream)| stream.excess_frames() as usize)
            .sum();
        let left = self.excess_budget().saturating_sub(others);
        let left = u32::try_from(left).unwrap_or(u32::MAX);
        INITIAL_CREDITS.saturating_add(left).min(share)
    }

    /// Queues a MORE for stream `id` once half its window is free (batching the grants).
    fn consider_grant(&mut self, id: u32) {
        let Some(stream) = self.streams.get(&id) else {
            return;
        };
        // Before its SYN is out the peer cannot know the stream: a MORE would come first.
        if stream.grant_scheduled || stream.syn.is_some() || !matches!(stream.recv, RecvState::Open)
        {
            return;
        }
        // The even share bounds the exact limit from above, and costs nothing to check first.
        if !stream.grant_due(self.window_share()) || !stream.grant_due(self.window_limit(id)) {
            return;
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.grant_scheduled = true;
        self.grant_queue.push_back(id);
        self.wake_writer();
    }

    // ----- operations of the application -----

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
        if !self.is_open() {
            return Err(self.draining_error());
        }
        if !self.may_open() {
            return Ok(None);
        }
        self.ours.opened += 1;
        let id = loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(self.id_step);
            if !self.streams.contains_key(&id) {
                break id;
            }
        };
        tracing::debug!(id, "stream opened");
        self.streams.insert(
            id,
            Box::new(StreamState::new(
                Some(Box::new(metadata)),
                self.max_window,
                self.read_tick,
            )),
        );
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
        self.schedule_data(id);
        Some(Ok(n))
    }

    /// How many bytes one stream may buffer from `write` just now (see [`CROWDED_SEND_BUFFERS`]).
    fn stream_send_limit(&self) -> usize {
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
    fn reset_stream(&mut self, id: u32, wire: Option<&str>, local: &str) {
        let peer_is_smolmux = self.peer_is_smolmux;
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let local = ResetReason::new(local.to_owned());
        let tell_peer = match &stream.send {
            SendState::Open | SendState::FinQueued | SendState::StopQueued(_) => true,
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
    fn owe_stop_sending_to_dropped_streams(&mut self) {
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
    fn queue_fin(&mut self, id: u32) {
        if let Some(stream) = self.streams.get_mut(&id) {
            if matches!(stream.send, SendState::Open) {
                stream.send = SendState::FinQueued;
            }
        }
        self.schedule_data(id);
    }

    fn maybe_remove(&mut self, id: u32) {
        let Some(stream) = self.streams.get(&id) else {
            return;
        };
        if stream.handles.all_dropped() && stream.local_done() && stream.remote_done() {
            let mut stream = self.streams.remove(&id).expect("found above");
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

/// A handle outlived its stream's entry; the table keeps entries while handles exist, so this
/// only guards against a bug turning into a hang.
fn stream_gone() -> io::Error {
    io::Error::other("stream no longer exists in the session")
}

/// The error of an operation on a reset stream. A refusal (an abort whose reason starts with
/// [`REFUSED`], as smolmux's refusals do) is `ConnectionRefused`, so that "try again later" can
/// be told from an application's abort without reading the message.
fn reset_error(reason: &str) -> io::Error {
    let kind = if reason.starts_with(REFUSED) {
        io::ErrorKind::ConnectionRefused
    } else {
        io::ErrorKind::ConnectionReset
    };
    io::Error::new(kind, format!("stream aborted: {reason}"))
}

fn writable(stream: &StreamState) -> io::Result<()> {
    match &stream.send {
        SendState::Open => Ok(()),
        SendState::Done(SendEnd::Reset(reason)) => Err(reset_error(reason)),
        SendState::AbortQueued(abort) => Err(reset_error(&abort.reason)),
        SendState::Done(SendEnd::PeerClosed(_)) => Err(peer_closed_error(0)),
        SendState::StopQueued(_) | SendState::Done(SendEnd::Stopped(_)) => {
            Err(peer_stopped_error(0))
        }
        SendState::FinQueued | SendState::FinSent => Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "stream already closed for writing",
        )),
    }
}

/// For `flush` and `close` on a direction that the peer or an abort ended: `Ok` if every byte
/// written had been sent by then, the error that says why not otherwise. `None` while the
/// direction is open or ends by our own FIN.
fn sent_or_lost(send: &SendState) -> Option<io::Result<()>> {
    match send {
        SendState::Open | SendState::FinQueued | SendState::FinSent => None,
        SendState::Done(SendEnd::PeerClosed(0))
        | SendState::Done(SendEnd::Stopped(0))
        | SendState::StopQueued(0) => Some(Ok(())),
        SendState::Done(SendEnd::PeerClosed(lost)) => Some(Err(peer_closed_error(*lost))),
        SendState::StopQueued(lost) | SendState::Done(SendEnd::Stopped(lost)) => {
            Some(Err(peer_stopped_error(*lost)))
        }
        SendState::Done(SendEnd::Reset(reason)) => Some(Err(reset_error(reason))),
        SendState::AbortQueued(abort) => Some(Err(reset_error(&abort.reason))),
    }
}

fn peer_closed_error(lost: usize) -> io::Error {
    broken_pipe(
        "the peer closed the stream (a picomux peer's FIN ends both directions)",
        lost,
    )
}

fn peer_stopped_error(lost: usize) -> io::Error {
    broken_pipe(
        "the peer stopped reading the stream (its handle was dropped)",
        lost,
    )
}

fn broken_pipe(why: &str, lost: usize) -> io::Error {
    let message = match lost {
        0 => why.to_owned(),
        _ => format!("{why}; {lost} bytes written were not sent"),
    };
    io::Error::new(io::ErrorKind::BrokenPipe, message)
}

#[cfg(test)]
mod tests;
