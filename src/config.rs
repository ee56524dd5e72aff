//! Session settings and their validation.

use std::io;
use std::time::Duration;

use crate::frame::{INITIAL_CREDITS, MAX_BODY};

/// The wire protocol a session speaks. Both ends of a connection must speak the same one.
///
/// | | `Picomux` | `SmuxV1` | `SmuxV2` | `Yamux` |
/// |---|---|---|---|---|
/// | peers | picomux 0.1, smolmux | Go xtaci/smux `Version: 1`, async_smux | Go xtaci/smux `Version: 2` | Go hashicorp/yamux, rust-yamux |
/// | needs a [`Role`] | no | yes | yes | yes |
/// | stream metadata ([`Mux::open`](crate::Mux::open)) | up to 65,535 bytes | none | none | none |
/// | half-close ([`Stream::close`](crate::Stream)) | with smolmux peers (a picomux peer's FIN ends both ways) | yes | yes | yes |
/// | [`Stream::abort`](crate::Stream::abort) | the peer sees the reason | FIN, and what arrives is discarded | same as v1 | RST (no reason) |
/// | per-stream flow control | frame credits | none (the session's receive budget stops the reader) | byte windows | byte windows (Window Update deltas) |
/// | keepalive | PING / PONG, [`Mux::last_rtt`](crate::Mux::last_rtt) | NOP, no RTT | NOP, no RTT | Ping / pong, [`Mux::last_rtt`](crate::Mux::last_rtt) |
///
/// `docs/protocol.md` describes each dialect on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// The picomux 0.1 protocol, with smolmux's extensions when both ends are smolmux
    /// (stream credits, STOP_SENDING, a graceful GOAWAY/BYE close). The default.
    #[default]
    Picomux,
    /// Go xtaci/smux protocol version 1: no per-stream flow control. Needs a [`Role`].
    SmuxV1,
    /// Go xtaci/smux protocol version 2: per-stream byte windows (UPD frames). Needs a
    /// [`Role`].
    SmuxV2,
    /// yamux, as Go hashicorp/yamux and rust-yamux speak it: per-stream byte windows, RST,
    /// Pings with an RTT, GoAway. Needs a [`Role`].
    Yamux,
}

impl Protocol {
    /// Whether this protocol needs [`Config::role`]: smux and yamux split stream ids by role
    /// (the client's are odd, the server's even), so the two ends must not pick the same.
    pub fn needs_role(self) -> bool {
        !matches!(self, Protocol::Picomux)
    }
}

/// Which end of the connection a session is, for protocols that tell them apart (see
/// [`Protocol::needs_role`]): usually the side that dialed the connection is the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The dialing side (Go's `smux.Client`): opens streams with odd ids.
    Client,
    /// The accepting side (Go's `smux.Server`): opens streams with even ids.
    Server,
}

/// Settings for one multiplexed session.
///
/// Every limit that protects the process from a misbehaving peer lives here, with a default that
/// suits a LAN or a fast internet link. [`Config::validate`] explains what a bad value breaks;
/// [`Mux::new`](crate::Mux::new) with an invalid config gives a session whose driver and every
/// operation fail with [`io::ErrorKind::InvalidInput`] and that explanation.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use smolmux::Config;
///
/// // A long, fat link: let each stream keep up to 8 MiB in flight.
/// let config = Config::default()
///     .stream_receive_buffer(8 << 20)
///     .session_receive_buffer(256 << 20)
///     .ping_interval(Some(Duration::from_secs(10)));
/// config.validate().unwrap();
/// assert_eq!(config.stream_receive_buffer, 8 << 20);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The wire protocol: [`Protocol::Picomux`] (the default), one of Go smux's versions, or
    /// [`Protocol::Yamux`].
    pub protocol: Protocol,
    /// Which end of the connection this is, for a protocol that needs to know
    /// ([`Protocol::needs_role`]): [`Config::validate`] fails without one. Picomux has no
    /// roles and ignores it. Default: `None`.
    pub role: Option<Role>,
    /// Most streams open at once, counting both directions and streams waiting in the accept
    /// backlog. [`Mux::open`](crate::Mux::open) fails past it; a peer's SYN past it is refused
    /// with FIN. Default: 1,024.
    pub max_streams: usize,
    /// Most streams opened by the peer and not yet taken by [`Mux::accept`](crate::Mux::accept).
    /// A SYN past it is refused with FIN at once, and the session goes on. Default: 256.
    pub accept_backlog: usize,
    /// How often to send a PING to check that the peer is alive and to measure the round trip.
    /// `None` sends no periodic PINGs and never times the session out (a duration too long to
    /// add to the clock, such as `Duration::MAX`, also sends none); PINGs still go at start-up
    /// (they announce smolmux's extensions and measure the path's round trip) and while small
    /// messages share the connection with bulk data (they measure the queue ahead of the
    /// messages). Default: 30 s.
    ///
    /// In smux, which has no PING, this is the interval of the keepalive NOP, at most 10 s
    /// (Go's default `KeepAliveInterval`: a Go peer ends a session from which nothing arrived
    /// for its `KeepAliveTimeout`, 30 s by default, so NOPs must come well within that);
    /// `None` sends none.
    pub ping_interval: Option<Duration>,
    /// How long to wait for the PONG that answers a PING before the session ends with
    /// [`io::ErrorKind::TimedOut`]. Used only when `ping_interval` is set. A duration too long to
    /// add to the clock (such as `Duration::MAX`) means never. Default: 30 s.
    ///
    /// In smux: how long the session waits with nothing at all arriving from the peer (Go's
    /// `KeepAliveTimeout`) before it ends with [`io::ErrorKind::TimedOut`]. Also used only when
    /// `ping_interval` is set. It must exceed the peer's keepalive interval (Go's
    /// `KeepAliveInterval`, 10 s by default), or an idle session ends; against a peer that
    /// sends no keepalive at all, set `ping_interval` to `None`. In smux version 2 it is also
    /// how long a writer waits on a closed window, after the peer's FIN, for a UPD that would
    /// reopen it before its writes fail with [`io::ErrorKind::BrokenPipe`].
    pub ping_timeout: Duration,
    /// How long a graceful end may take: from [`Mux::close`](crate::Mux::close), or from the
    /// moment every `Mux` and `Stream` handle is gone, until every stream has finished both
    /// ways. Past it, the streams still open are aborted (their peers see
    /// [`io::ErrorKind::ConnectionReset`]) and the session ends. A duration too long to add to
    /// the clock (such as `Duration::MAX`) means never. Default: 30 s.
    pub close_timeout: Duration,
    /// Most bytes one stream may hold received but not yet read by the application, counting the
    /// credits the peer still holds at 65,535 bytes each (credits count frames, not bytes),
    /// unless its window grew (below). A
    /// stream's receive window starts at this limit, so one stream can fill a fast path at once,
    /// except while its sender interleaves it with other streams' messages, when it is the
    /// protocol's initial 10 frames. On paths of a millisecond or more the window grows past it
    /// while the application keeps reading (and shrinks back to it when reading slows), within
    /// the stream's share of `session_receive_buffer`. Beyond those 10 frames, all windows
    /// together hold at most half of `session_receive_buffer`, shared out evenly among the open
    /// streams that want more, so that readers which stall with full windows do not fill it.
    /// It must be at least 655,350 bytes, since the protocol gives every new stream 10 credits.
    /// Default: 4 MiB.
    ///
    /// In smux version 2 it is the window, in bytes, that our UPD frames announce (at most
    /// 2^31 - 1), except while the sender interleaves the stream with messages, when it is
    /// 163,830 bytes (at most this); version 1 has no per-stream window (see
    /// `session_receive_buffer`).
    pub stream_receive_buffer: usize,
    /// Most bytes all streams together may hold received and not yet read, so memory stays
    /// bounded even against a peer that opens many streams and fills each one's initial window.
    /// In picomux, data past it resets the stream read longest ago (the connection is always
    /// read, so PINGs are answered and the other streams go on). In smux the driver stops
    /// reading the connection until the application reads, as Go smux does: in version 1,
    /// which has no per-stream flow control, that is the only limit, and one stream nobody
    /// reads stops them all. Default: 64 MiB.
    pub session_receive_buffer: usize,
    /// Most bytes one stream buffers from `write` before the driver frames them; a writer past it
    /// waits. Once the streams together buffer four times this, each buffers at most 64 KiB (a
    /// full frame) more until they drain, so that many writers at once do not hold a full buffer
    /// each. Default: 128 KiB.
    pub stream_send_buffer: usize,
    /// Largest PSH body this side sends, from 1 to 65,535 bytes. Larger frames cost less per byte;
    /// smaller ones interleave streams more finely on a slow link. While another stream is
    /// sending small messages (writes under a quarter of this size), bulk streams send frames of
    /// at most a quarter of it, so that a message waits behind fewer bytes. Default: 65,535.
    pub max_frame_body: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            protocol: Protocol::Picomux,
            role: None,
            max_streams: 1024,
            accept_backlog: 256,
            ping_interval: Some(Duration::from_secs(30)),
            ping_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(30),
            stream_receive_buffer: 4 << 20,
            session_receive_buffer: 64 << 20,
            stream_send_buffer: 128 << 10,
            max_frame_body: MAX_BODY,
        }
    }
}

/// Setters, one per field, for building a config in one expression; new settings can be added
/// without breaking anyone (the struct is `#[non_exhaustive]`, so it cannot be built with a
/// struct literal outside this crate).
impl Config {
    /// Sets [`Config::protocol`].
    ///
    /// ```
    /// use smolmux::{Config, Protocol, Role};
    ///
    /// // Talk to a Go program that called smux.Server with Version 2.
    /// let config = Config::default().protocol(Protocol::SmuxV2).role(Role::Client);
    /// config.validate().unwrap();
    /// ```
    #[must_use]
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sets [`Config::role`].
    #[must_use]
    pub fn role(mut self, role: Role) -> Self {
        self.role = Some(role);
        self
    }

    /// Sets [`Config::max_streams`].
    #[must_use]
    pub fn max_streams(mut self, max_streams: usize) -> Self {
        self.max_streams = max_streams;
        self
    }

    /// Sets [`Config::accept_backlog`].
    #[must_use]
    pub fn accept_backlog(mut self, accept_backlog: usize) -> Self {
        self.accept_backlog = accept_backlog;
        self
    }

    /// Sets [`Config::ping_interval`].
    #[must_use]
    pub fn ping_interval(mut self, ping_interval: Option<Duration>) -> Self {
        self.ping_interval = ping_interval;
        self
    }

    /// Sets [`Config::ping_timeout`].
    #[must_use]
    pub fn ping_timeout(mut self, ping_timeout: Duration) -> Self {
        self.ping_timeout = ping_timeout;
        self
    }

    /// Sets [`Config::close_timeout`].
    #[must_use]
    pub fn close_timeout(mut self, close_timeout: Duration) -> Self {
        self.close_timeout = close_timeout;
        self
    }

    /// Sets [`Config::stream_receive_buffer`].
    #[must_use]
    pub fn stream_receive_buffer(mut self, stream_receive_buffer: usize) -> Self {
        self.stream_receive_buffer = stream_receive_buffer;
        self
    }

    /// Sets [`Config::session_receive_buffer`].
    #[must_use]
    pub fn session_receive_buffer(mut self, session_receive_buffer: usize) -> Self {
        self.session_receive_buffer = session_receive_buffer;
        self
    }

    /// Sets [`Config::stream_send_buffer`].
    #[must_use]
    pub fn stream_send_buffer(mut self, stream_send_buffer: usize) -> Self {
        self.stream_send_buffer = stream_send_buffer;
        self
    }

    /// Sets [`Config::max_frame_body`].
    #[must_use]
    pub fn max_frame_body(mut self, max_frame_body: usize) -> Self {
        self.max_frame_body = max_frame_body;
        self
    }
}

impl Config {
    /// The smallest `stream_receive_buffer`: the 10 initial credits of a new stream, each of
    /// which may carry a 65,535-byte frame.
    pub const MIN_STREAM_RECEIVE_BUFFER: usize = INITIAL_CREDITS as usize * MAX_BODY;

    /// Checks that the settings are consistent, and says which one is not.
    ///
    /// ```
    /// let bad = smolmux::Config::default().max_streams(0);
    /// let err = bad.validate().unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// assert!(err.to_string().contains("max_streams"));
    /// ```
    pub fn validate(&self) -> io::Result<()> {
        let invalid = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        if self.protocol.needs_role() && self.role.is_none() {
            return invalid(format!(
                "invalid Config: protocol {:?} needs a role: set .role(Role::Client) on the side \
                 that dialed the connection and .role(Role::Server) on the side that accepted it",
                self.protocol
            ));
        }
        if self.max_streams == 0 {
            return invalid("invalid Config: max_streams must be at least 1".into());
        }
        if self.accept_backlog == 0 {
            return invalid("invalid Config: accept_backlog must be at least 1".into());
        }
        if self.ping_interval == Some(Duration::ZERO) {
            return invalid("invalid Config: ping_interval must be positive (or None)".into());
        }
        if self.ping_timeout.is_zero() {
            return invalid("invalid Config: ping_timeout must be positive".into());
        }
        if self.stream_receive_buffer < Self::MIN_STREAM_RECEIVE_BUFFER {
            return invalid(format!(
                "invalid Config: stream_receive_buffer is {} bytes but must be at least {} \
                 (10 initial credits of 65,535-byte frames)",
                self.stream_receive_buffer,
                Self::MIN_STREAM_RECEIVE_BUFFER
            ));
        }
        if self.session_receive_buffer < self.stream_receive_buffer {
            return invalid(format!(
                "invalid Config: session_receive_buffer ({}) is smaller than stream_receive_buffer ({})",
                self.session_receive_buffer, self.stream_receive_buffer
            ));
        }
        if self.stream_send_buffer == 0 {
            return invalid("invalid Config: stream_send_buffer must be at least 1".into());
        }
        if self.max_frame_body == 0 || self.max_frame_body > MAX_BODY {
            return invalid(format!(
                "invalid Config: max_frame_body is {} but must be within 1..=65535",
                self.max_frame_body
            ));
        }
        Ok(())
    }

    /// Receive window of one stream in credits (frames) at its largest.
    pub(crate) fn max_stream_window(&self) -> u32 {
        (self.stream_receive_buffer / MAX_BODY).min(u32::MAX as usize) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn smux_is_valid_with_a_role_and_picomux_with_or_without_one() {
        for protocol in [Protocol::SmuxV1, Protocol::SmuxV2, Protocol::Yamux] {
            for role in [Role::Client, Role::Server] {
                Config::default()
                    .protocol(protocol)
                    .role(role)
                    .validate()
                    .unwrap();
            }
        }
        Config::default().role(Role::Server).validate().unwrap();
    }

    #[test]
    fn each_invalid_setting_is_named_in_the_error() {
        let cases: Vec<(Config, &str)> = vec![
            (
                Config {
                    max_streams: 0,
                    ..Config::default()
                },
                "max_streams",
            ),
            (
                Config {
                    accept_backlog: 0,
                    ..Config::default()
                },
                "accept_backlog",
            ),
            (
                Config {
                    ping_interval: Some(Duration::ZERO),
                    ..Config::default()
                },
                "ping_interval",
            ),
            (
                Config {
                    ping_timeout: Duration::ZERO,
                    ..Config::default()
                },
                "ping_timeout",
            ),
            (
                Config {
                    stream_receive_buffer: 1000,
                    ..Config::default()
                },
                "stream_receive_buffer",
            ),
            (
                Config {
                    session_receive_buffer: 1 << 20,
                    ..Config::default()
                },
                "session_receive_buffer",
            ),
            (
                Config {
                    stream_send_buffer: 0,
                    ..Config::default()
                },
                "stream_send_buffer",
            ),
            (
                Config {
                    max_frame_body: 0,
                    ..Config::default()
                },
                "max_frame_body",
            ),
            (
                Config {
                    max_frame_body: 65536,
                    ..Config::default()
                },
                "max_frame_body",
            ),
            (
                Config::default().protocol(Protocol::SmuxV1),
                "role(Role::Client)",
            ),
            (Config::default().protocol(Protocol::SmuxV2), "needs a role"),
            (Config::default().protocol(Protocol::Yamux), "needs a role"),
        ];
        for (config, name) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains(name), "{err} should name {name}");
        }
    }
}
