//! A snapshot of a session's counters, for metrics and tests.

/// Counters of one session at one instant, from [`Mux::stats`](crate::Mux::stats).
///
/// Each field is a gauge (it goes up and down), cheap to read, and suitable for export to a
/// metrics system. The receive and send byte counts stay within the limits set in
/// [`Config`](crate::Config): `recv_buffered_bytes` within `session_receive_buffer` (plus at most
/// one frame), and each stream's share of `send_buffered_bytes` within `stream_send_buffer`.
///
/// ```
/// let stats = smolmux::Stats::default();
/// assert_eq!(stats.open_streams, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Streams in the session's table, in both directions, including streams waiting to be
    /// accepted and closed streams whose peer has not finished yet.
    pub open_streams: usize,
    /// Streams opened by the peer and waiting for [`Mux::accept`](crate::Mux::accept).
    pub pending_accept: usize,
    /// Bytes received and not yet read by the application, over all streams.
    pub recv_buffered_bytes: usize,
    /// Bytes written by the application and not yet handed to the connection, over all streams.
    pub send_buffered_bytes: usize,
}
