//! The protocol logic of one session, with no I/O: the stream table, credits and byte accounting,
//! liveness, limits and the fair send scheduler.
//!
//! The driver feeds it received frames ([`Session::on_frame`]) and the time
//! ([`Session::on_timeout`]), and asks it for bytes to send ([`Session::poll_transmit`]). The
//! user-facing handles call the `app_*` methods. Every method runs under the session lock and only
//! records which tasks to wake (in [`Session::take_wakers`]); the caller wakes them after unlocking.
//!
//! The session speaks one dialect ([`crate::wire`]: picomux, smux v1 or v2, yamux); where the
//! dialects differ (the codec, flow control, stream ids, liveness frames, what FIN means) it
//! asks its [`Dialect`].
//!
//! This file holds the state (the session's and each stream's); the methods live by concern:
//! [`recv`] (frames from the peer, receive windows, the receive budget), [`send`] (the send
//! scheduler), [`app`] (the application's operations), [`liveness`] (PINGs and timers),
//! [`lifecycle`] (how the session ends), [`admission`] (stream credits), and the dialects' own
//! rules in [`smux`] and [`yamux`].
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

use crate::config::{Config, Protocol};
use crate::congestion::Pacer;
use crate::fifo::Fifo;
use crate::frame::{
    encode_frame, encode_frame_as, Command, Header, PingInfo, ProtocolError, Signal, Upd,
    INITIAL_CREDITS, MAX_BODY,
};
use crate::send_buffer::{ChunkPool, SendBuffer};
use crate::stats::Stats;
use crate::transmit::Transmit;
use crate::wire::smux::INITIAL_PEER_WINDOW;
use crate::wire::{Dialect, Flow, StreamIds};

mod admission;
mod app;
mod lifecycle;
mod liveness;
mod recv;
mod send;
mod smux;
mod window;
mod yamux;

use admission::StreamCredits;
pub(crate) use lifecycle::SessionEnd;
use lifecycle::{Farewell, Phase};
use smux::ByteCounts;
use yamux::YamuxState;

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

/// While streams exchange small messages over a path too short to pace (see
/// [`crate::congestion::MIN_PACED_RTT`]), bulk streams send frames of at most
/// `max_frame_body / INTERLEAVED_FRAME_DIVISOR` bytes: the protocol lets a stream keep at least 10
/// frames in flight, and a message sent by another stream waits behind all of them (640 KiB of
/// 64 KiB frames). On such a path 10 small frames are still more than the bandwidth × delay
/// product; on a longer one they would starve the bulk, which is paced there instead.
/// A PSH that empties its stream's buffer and is smaller than this fraction of
/// `max_frame_body` counts as a message, unless it is the tail of a burst (the stream's previous
/// PSH left bytes queued): else a bulk stream's own tails would hide the other streams' messages.
const INTERLEAVED_FRAME_DIVISOR: usize = 4;

/// How many PSH frames after another stream's last message bulk streams keep their frames small
/// (or are paced): at least this many, and on a paced path at least
/// [`MESSAGE_MEMORY_ROUND_TRIPS`] round trips of them, so that messages a round trip apart count
/// as one conversation (see [`Session::message_memory`]).
const MESSAGE_MEMORY: u64 = 128;

/// See [`MESSAGE_MEMORY`].
const MESSAGE_MEMORY_ROUND_TRIPS: u64 = 4;

/// A stream read within the session's last this many reads per open stream was read lately
/// and wants its share of the receive budget (see [`Session::wants_share`]): streams read in
/// turn each read once per round of the others, and some rounds are uneven.
const RECENT_READS_PER_STREAM: u32 = 4;

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

/// The longest interval between smux NOPs, whatever `ping_interval` says: Go smux's default
/// `KeepAliveInterval`, a third of its default `KeepAliveTimeout`.
const SMUX_KEEPALIVE: Duration = Duration::from_secs(10);

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
    /// smux v2: the peer's FIN came, then no UPD for `ping_timeout` while we waited on a
    /// closed window (see [`Session::fail_stalled_writes`]): what was queued (this many
    /// bytes) is discarded, and an empty FIN goes out next.
    StallQueued(usize),
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
    /// smux v2: the peer closed the stream and granted no more window; this many queued bytes
    /// were discarded.
    Stalled(usize),
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
    /// What the peer lets us send: PSH frames (picomux credits) or bytes (smux v2); unbounded
    /// in smux v1.
    send_credits: u32,
    /// smux v2's byte counts (see [`ByteCounts`]); `None` in the other dialects. Boxed: it
    /// would take picomux's stream state past its 128-byte allocation class.
    bytes: Option<Box<ByteCounts>>,
    recv: RecvState,
    /// Received data not yet read, front first (a frame the application has begun reading is
    /// advanced past what it read).
    recv_queue: Fifo<Bytes>,
    /// picomux: the PSH frames the peer may still send us on this stream (its credits). Unused
    /// in smux, whose version 2 checks what arrives against its byte counts instead.
    peer_credits: u32,
    /// picomux: the target of `peer_credits + recv_queue.len()`, the receive window in frames.
    /// It starts as the stream's whole receive buffer and grows beyond it while the
    /// application keeps up with a long fat path (see [`Session::tune_window`]), except while
    /// the peer interleaves this stream with other streams' messages, when it is the initial 10
    /// frames (see [`Session::on_psh`]). smux v2: the window in bytes our next UPD tells,
    /// chosen as the stream's receive buffer or the interleaving window (see
    /// [`Session::on_smux_psh`]).
    window: u32,
    /// When our latest MORE (yamux: Window Update) on this stream was encoded, in
    /// milliseconds of the session's clock (wrapping every 65.5 s; 0: none yet): the window tuner's measure of how fast it is
    /// consumed. Two bytes, not an `Instant`'s sixteen, keep the state within 128 bytes (see
    /// `stream_state_stays_within_128_bytes`); a MORE a multiple of 65.5 s after the previous
    /// one may pass for a fast one, which at worst doubles the window once, within its limit.
    granted_at: u16,
    /// The received PSH bodies' average length in units of 256 bytes (a moving average), for
    /// the tuner to count a grown window in bytes, not frames (see
    /// [`Session::window_in_frames`]).
    frame_len: u8,
    /// In `grant_queue`, waiting for a MORE (picomux) or a UPD (smux v2).
    grant_scheduled: bool,
    /// In `data_queue`, waiting for a SYN, PSH or FIN to be encoded.
    data_scheduled: bool,
    /// Which of the user's handles are gone (one state, not two flags, to keep the stream
    /// state within its 128-byte allocation class).
    handles: Handles,
    /// A STOP_SENDING is to go (after the SYN): the handle is gone, the peer still sends.
    stop_owed: bool,
    /// The session's `read_tick` at the stream's latest read (or its creation): the stream
    /// read longest ago is reset first when the receive budget overflows, and a stream read
    /// lately wants its share of the budget (`Session::read_lately`).
    last_read: u32,
    /// Our latest PSH on this stream left bytes queued: the PSH that empties the queue next is
    /// the tail of a burst, not a message.
    mid_burst: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl StreamState {
    fn new(syn: Option<Box<Bytes>>, flow: Flow, window: u32, last_read: u32) -> Self {
        // What each side may send before hearing from the other, in the dialect's unit.
        let (credits, window) = match flow {
            Flow::FrameCredits => (INITIAL_CREDITS, window),
            Flow::ByteWindow => (INITIAL_PEER_WINDOW, window),
            Flow::SessionOnly => (u32::MAX, 0),
        };
        StreamState {
            syn,
            send: SendState::Open,
            send_buf: SendBuffer::default(),
            send_credits: credits,
            bytes: (flow == Flow::ByteWindow).then(Box::default),
            recv: RecvState::Open,
            recv_queue: Fifo::default(),
            peer_credits: credits,
            window,
            granted_at: 0,
            frame_len: (MAX_BODY >> 8) as u8,
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

    /// Counts `n` bytes as read by the application, for smux v2's UPD.
    fn count_read(&mut self, n: usize) {
        if let Some(counts) = self.bytes.as_deref_mut() {
            counts.read = counts.read.wrapping_add(n as u32);
        }
    }

    /// Bytes received and not yet read.
    fn unread_bytes(&self) -> usize {
        self.recv_queue.iter().map(Bytes::len).sum()
    }

    /// Drops the received data not yet read (counted as read, for smux v2's window); returns
    /// its length in bytes.
    fn discard_received(&mut self) -> usize {
        let mut bytes = 0;
        while let Some(unread) = self.recv_queue.pop_front() {
            bytes += unread.len();
        }
        self.count_read(bytes);
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

    /// Whether `1 / batch` of the window, at most `limit`, is free: time for a MORE.
    fn grant_due(&self, limit: u32, batch: u32) -> bool {
        let free = self.free_window(limit);
        free > 0 && free >= self.window.min(limit) / batch
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
            SendState::StopQueued(_) | SendState::StallQueued(_) | SendState::AbortQueued(_) => {
                Some(DataFrame::Fin)
            }
            _ => None,
        }
    }

    fn local_done(&self) -> bool {
        self.syn.is_none()
            && !self.stop_owed
            && matches!(self.send, SendState::FinSent | SendState::Done(_))
    }

    /// Whether the peer sends nothing more on this stream. In smux v2 a local abort does not
    /// end the peer's direction: it may still write, and waits for our UPDs, until its FIN.
    fn remote_done(&self) -> bool {
        match self.recv {
            RecvState::Open => false,
            RecvState::Reset(_) => self.bytes.as_deref().is_none_or(|counts| counts.peer_fin),
            RecvState::Finished => true,
        }
    }

    fn wake_all(&mut self, wake: &mut Vec<Waker>) {
        wake.extend(self.read_waker.take());
        wake.extend(self.write_waker.take());
    }
}

/// Liveness bookkeeping: at most one own PING outstanding, at most one PONG owed.
#[derive(Debug)]
struct Liveness {
    /// How often to ping (picomux) or to send a NOP (smux: at most [`SMUX_KEEPALIVE`]).
    interval: Option<Duration>,
    timeout: Duration,
    /// When the latest frame arrived (or the first timer run, before any): smux's timeout
    /// counts from it.
    last_arrival: Option<Instant>,
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
    dialect: Dialect,
    max_window: u32,
    /// The origin of the streams' `granted_at` clock.
    epoch: Instant,
    /// Boxed, so that the table's spare capacity costs a pointer per slot, not a whole state.
    streams: HashMap<u32, Box<StreamState>>,
    /// The ids of the streams we open.
    ids: StreamIds,
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
    /// Bulk streams waiting for the queue ahead of messages to drain, or for the pacer (still
    /// `data_scheduled`).
    held: Vec<u32>,
    /// When the held streams may go, if no PONG releases them first (see
    /// [`Session::hold_release`]).
    held_until: Option<Instant>,
    /// Paces bulk frames while messages share the session (see [`crate::congestion`]).
    pacer: Pacer,
    grant_queue: VecDeque<u32>,
    liveness: Liveness,
    recv_buffered: usize,
    send_buffered: usize,
    /// Spent send-buffer chunks, for the streams' next writes.
    chunks: ChunkPool,
    /// PSH frames encoded so far.
    psh_sent: u64,
    /// When (in `psh_sent`) and on which stream the latest small message was encoded.
    last_message: Option<(u64, u32)>,
    /// When (in `psh_sent`) the latest PSH that was not a message was encoded.
    last_bulk: Option<u64>,
    /// The largest PSH body received: frames well below it (or below our own `max_frame_body`,
    /// from a smolmux peer) mean the peer is interleaving.
    largest_psh_received: usize,
    /// The stream of the latest data frame received in the byte-window dialects (0: none),
    /// to tell a sender that interleaves streams (see [`Session::classify_data_frame`]).
    last_data_stream: u32,
    /// Pings, pongs and un-ACKed opens of the yamux dialect (see [`yamux`]).
    yamux: YamuxState,
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
        let dialect = Dialect::new(&config);
        let interval = match dialect.pings() {
            true => config.ping_interval,
            // A Go peer ends the session after a whole KeepAliveTimeout (30 s by default) with
            // nothing received, checked once per timeout period: NOPs must come well within it.
            false => config.ping_interval.map(|every| every.min(SMUX_KEEPALIVE)),
        };
        let liveness = Liveness {
            interval,
            timeout: config.ping_timeout,
            last_arrival: None,
            // The first PING announces smolmux's extensions and measures the first round trip.
            // smux's first NOP waits an interval, as Go's does (see `start_keepalive`).
            ping_wanted: dialect.pings(),
            ping_sent_at: None,
            next_ping_at: None,
            pong_owed: false,
            last_rtt: None,
            min_rtt: None,
            rtt_samples: 0,
        };
        let mut session = Session {
            max_window: config.max_stream_window(),
            epoch: Instant::now(),
            config,
            dialect,
            streams: HashMap::new(),
            ids: dialect.stream_ids(),
            peer_is_smolmux: false,
            // Only a picomux peer may turn out to be smolmux (by its first PING): in smux and
            // yamux the peer is known from the start.
            peer_pinged: !dialect.is_picomux(),
            accept_queue: VecDeque::new(),
            early_resets: 0,
            refusals: VecDeque::new(),
            data_queue: VecDeque::new(),
            held: Vec::new(),
            held_until: None,
            pacer: Pacer::default(),
            grant_queue: VecDeque::new(),
            liveness,
            recv_buffered: 0,
            send_buffered: 0,
            chunks: ChunkPool::default(),
            psh_sent: 0,
            last_message: None,
            last_bulk: None,
            largest_psh_received: 0,
            last_data_stream: 0,
            yamux: YamuxState::default(),
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

    /// The wire protocol the session speaks (for the reader's decoder).
    pub(crate) fn protocol(&self) -> Protocol {
        self.dialect.protocol
    }

    /// A new stream's state, as the dialect starts it.
    fn new_stream(&self, syn: Option<Box<Bytes>>) -> Box<StreamState> {
        let flow = self.dialect.flow();
        let window = match flow {
            Flow::ByteWindow => self.smux_window(),
            _ => self.max_window,
        };
        Box::new(StreamState::new(syn, flow, window, self.read_tick))
    }

    /// Wakers recorded since the last call, to be woken once the lock is released.
    pub(crate) fn take_wakers(&mut self) -> Vec<Waker> {
        std::mem::take(&mut self.wake)
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
        SendState::StallQueued(_) | SendState::Done(SendEnd::Stalled(_)) => {
            Err(window_stalled_error(0))
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
        | SendState::StopQueued(0)
        | SendState::Done(SendEnd::Stalled(0))
        | SendState::StallQueued(0) => Some(Ok(())),
        SendState::Done(SendEnd::PeerClosed(lost)) => Some(Err(peer_closed_error(*lost))),
        SendState::StopQueued(lost) | SendState::Done(SendEnd::Stopped(lost)) => {
            Some(Err(peer_stopped_error(*lost)))
        }
        SendState::StallQueued(lost) | SendState::Done(SendEnd::Stalled(lost)) => {
            Some(Err(window_stalled_error(*lost)))
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

fn window_stalled_error(lost: usize) -> io::Error {
    broken_pipe(
        "the peer closed the stream and stopped granting window \
         (no window update, smux's UPD or yamux's, within ping_timeout after its FIN)",
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
#[cfg(test)]
mod tests_smux;
