//! A fast, hardened stream multiplexer for smol, async-std and any other executor.
//!
//! smolmux carries many logical byte streams over one reliable connection (TCP, TLS, or anything
//! that is [`AsyncRead`](futures_io::AsyncRead) + [`AsyncWrite`](futures_io::AsyncWrite)). It
//! speaks the wire protocol of the picomux 0.1 crate by default, so either end may be picomux,
//! and Go's [xtaci/smux](https://github.com/xtaci/smux) versions 1 and 2 when configured to (see
//! [Protocols](#protocols)).
//!
//! # The model
//!
//! - [`Mux::new`] wraps a connection and returns a [`Mux`] handle and a [`Driver`]. The driver is
//!   a future that does all of the connection's I/O (reading and dispatching frames, writing,
//!   pinging); spawn it on any executor. There is no task per stream.
//! - Either side [`open`](Mux::open)s streams and [`accept`](Mux::accept)s the peer's. Opening
//!   costs no round trip: the SYN carries the opener's metadata, and data may follow at once.
//! - A [`Stream`] is `AsyncRead + AsyncWrite`. Closing it is a **half-close**: the bytes written
//!   go out, then FIN; the peer reads EOF and may go on writing. [`Stream::abort`] resets both
//!   directions with a reason. Dropping a stream closes it and tells the peer to stop sending.
//! - **Flow control**: the receiver grants credits as the application reads, so a stream whose
//!   reader stalls stops its sender without slowing the other streams, and memory stays within
//!   [`Config::stream_receive_buffer`] per stream and [`Config::session_receive_buffer`] in all
//!   (past which the stream read longest ago is reset: the connection is always read).
//!   A stream's window is its whole receive buffer, so one stream can fill a fast link at once,
//!   except while the sender interleaves the stream with other streams' messages, so that they
//!   do not queue behind it.
//! - **Liveness**: with [`Config::ping_interval`] set, the session pings the peer and ends with
//!   [`std::io::ErrorKind::TimedOut`] if a PONG does not come within [`Config::ping_timeout`];
//!   [`Mux::last_rtt`] reports the latest round trip.
//! - **Limits**: [`Config::max_streams`] and [`Config::accept_backlog`] bound the streams; a
//!   stream the peer opens past them is refused at once (its opener sees the reason) and the
//!   session goes on. Every limit and its default is listed in `docs/security.md`.
//! - **Ending**: [`Mux::close`] drains the session gracefully (no new streams either way, every
//!   stream finishes), bounded by [`Config::close_timeout`], and ends both sides without
//!   needing the transport's end; dropping every handle does the same. `docs/protocol.md` has
//!   the table of every way a stream or a session ends.
//! - **Failure**: a peer that breaks the protocol ends the session with
//!   [`std::io::ErrorKind::InvalidData`] and a message naming the problem; when the connection
//!   dies, every pending and later operation fails promptly, and the driver resolves with the
//!   cause.
//!
//! # Protocols
//!
//! [`Config::protocol`] picks the wire protocol; both ends must speak the same one. The API is
//! the same in each; what the protocol cannot carry is said where it matters:
//!
//! - [`Protocol::Picomux`] (the default): picomux 0.1's protocol, with smolmux's extensions
//!   between smolmux peers (half-close, abort with a reason, stream credits, a graceful close).
//!   Everything above describes it.
//! - [`Protocol::SmuxV1`] and [`Protocol::SmuxV2`]: Go xtaci/smux's versions 1 and 2 (kcptun,
//!   frp, xray and many tunnels speak them). They need a [`Role`] ([`Config::role`]:
//!   [`Role::Client`] on the side that dialed): it splits the stream ids. SYN has no metadata
//!   ([`Mux::open`] with some fails with `InvalidInput`); FIN is always a half-close; there is
//!   no reset, so [`Stream::abort`] sends a FIN and discards what still arrives, and a refused
//!   stream just ends (its opener reads EOF); liveness is a NOP every
//!   `min(ping_interval, 10 s)` and a timeout when nothing arrives for `ping_timeout`, with no
//!   round trip measured ([`Mux::last_rtt`] is `None`). Version 2 has per-stream byte windows;
//!   version 1 only the session's receive budget, past which the driver stops reading.
//! - [`Protocol::Yamux`]: Go's hashicorp/yamux and rust-yamux (Consul, Nomad, Vault, libp2p).
//!   It needs a [`Role`] too, and has no metadata. FIN is a half-close and
//!   [`Stream::abort`] an RST (the peer sees no reason); a refusal is an RST, which the
//!   opener's operations report as `ConnectionRefused`. Byte windows per stream (256 KiB
//!   before the first Window Update); liveness is a Ping with an opaque value, answered with a
//!   pong, so [`Mux::last_rtt`] works. [`Mux::close`] sends GoAway(0) and drains; the peer's
//!   GoAway(0) stops new opens while existing streams finish, and GoAway(1) or (2) ends the
//!   session with an error naming the code. At most 256 of our opens await the peer's ACK at
//!   once ([`Mux::open`] waits for the next).
//!
//! ```
//! use smolmux::{Config, Protocol, Role};
//!
//! // The dialing side of a connection to a Go program using smux.Server with Version 2.
//! let config = Config::default().protocol(Protocol::SmuxV2).role(Role::Client);
//! # config.validate().unwrap();
//! ```
//!
//! `docs/protocol.md` describes each on the wire.
//!
//! # Example
//!
//! An echo over loopback TCP, with both ends in one process:
//!
//! ```
//! use futures_lite::{AsyncReadExt, AsyncWriteExt};
//! use smolmux::{Config, Mux};
//!
//! # fn main() -> std::io::Result<()> {
//! smol::block_on(async {
//!     let listener = smol::net::TcpListener::bind("127.0.0.1:0").await?;
//!     let addr = listener.local_addr()?;
//!
//!     // Server: echo every accepted stream back to its opener.
//!     smol::spawn(async move {
//!         let (tcp, _) = listener.accept().await?;
//!         let (mux, driver) = Mux::new(tcp.clone(), tcp, Config::default());
//!         smol::spawn(driver).detach();
//!         loop {
//!             let stream = mux.accept().await?;
//!             smol::spawn(async move {
//!                 let (reader, mut writer) = futures_lite::io::split(stream);
//!                 futures_lite::io::copy(reader, &mut writer).await?;
//!                 writer.close().await // half-close after the echo
//!             })
//!             .detach();
//!         }
//!         #[allow(unreachable_code)]
//!         std::io::Result::Ok(())
//!     })
//!     .detach();
//!
//!     // Client: one connection, several streams at once.
//!     let tcp = smol::net::TcpStream::connect(addr).await?;
//!     let (mux, driver) = Mux::new(tcp.clone(), tcp, Config::default());
//!     smol::spawn(driver).detach();
//!     for i in 0..4 {
//!         let mut stream = mux.open(format!("stream {i}").as_bytes()).await?;
//!         stream.write_all(b"hello").await?;
//!         stream.close().await?; // we are done writing; the reply can still come back
//!         let mut reply = Vec::new();
//!         stream.read_to_end(&mut reply).await?;
//!         assert_eq!(reply, b"hello");
//!     }
//!     mux.close().await
//! })
//! # }
//! ```
//!
//! # Errors
//!
//! Every operation fails with an [`std::io::Error`] whose message says what happened; its kind
//! says what a program can do about it:
//!
//! | kind | where | meaning |
//! |---|---|---|
//! | `ConnectionRefused` | stream reads and writes | the peer refused the stream (its backlog or `max_streams` was full, or it is closing): opening again later may work |
//! | `ConnectionReset` | stream reads and writes | the stream was aborted, by either side ([`Stream::abort`], the message carries the reason), or reset because its unread data passed [`Config::session_receive_buffer`] |
//! | `BrokenPipe` | stream writes, `flush`, `close` | writing after our own `close`, after the peer stopped reading (it dropped its handle), or after a picomux peer's FIN; `flush` and `close` only when written bytes were dropped unsent |
//! | `WouldBlock` | [`Mux::try_open`] | no stream credit or no free slot now; [`Mux::open`] would wait |
//! | `NotConnected` | [`Mux::open`], [`Mux::accept`]; every operation after a graceful end | either side is closing the session, or it was closed |
//! | `TimedOut` | [`Mux::close`]; every operation after a ping timeout | `close_timeout` passed and open streams were aborted; or no PONG came within `ping_timeout` (smux: nothing at all arrived within it) |
//! | `ConnectionAborted` | every operation after the peer's end | the peer closed the connection |
//! | `InvalidData` | every operation, and the driver | the peer broke the protocol; the message names how (and says so when the bytes look like TLS, HTTP or SSH) |
//! | `UnexpectedEof` | every operation, and the driver | the connection ended in the middle of a frame |
//! | `InvalidInput` | [`Mux::open`] (metadata over 65,535 bytes, or any in smux); everything, with an invalid [`Config`] | the argument or setting named in the message |
//! | any other | every operation, and the driver | the connection's own I/O error |
//!
//! Bytes already received stay readable after a stream or session ends, until the error (or
//! EOF, where the peer's FIN had arrived).
//!
//! # Observability
//!
//! smolmux logs with [`tracing`](https://docs.rs/tracing), inside a `smolmux` span whose
//! `session` field numbers the sessions of the process: session start and orderly end at
//! `debug`, an end by error at `info` (`warn` when the peer broke the protocol), stream opens,
//! closes, refusals and aborts at `debug`, and every frame sent or received at `trace`.
//! [`Mux::stats`] gives gauges (open streams, streams waiting to be accepted, bytes buffered
//! each way) to export as metrics, and [`Mux::last_rtt`] the latest measured round trip.
//!
//! # Modules
//!
//! The protocol logic (the frame codec and the session state machine) does no I/O and is
//! tested on its own; the driver is a thin layer that moves bytes between it and the
//! connection. The public API is [`Mux`], [`Stream`] and its halves, [`Config`], [`Stats`] and
//! [`Driver`]; the frame codec is reachable for the fuzz targets and test tools but hidden from
//! these docs and not covered by semantic versioning.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod congestion;
mod driver;
mod fifo;
#[doc(hidden)]
pub mod frame;
mod mux;
mod read_buffer;
mod send_buffer;
mod session;
mod shared;
mod stats;
mod stream;
mod transmit;
mod wire;

pub use config::{Config, Protocol, Role};
pub use driver::Driver;
pub use mux::Mux;
pub use stats::Stats;
pub use stream::{ReadHalf, Stream, WriteHalf};
