//! Liveness: PINGs, PONGs, the round trip, and the timers the driver fires.

use super::*;

impl Session {
    /// The next instant at which [`Session::on_timeout`] has something to do.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        [
            self.ping_deadline(),
            self.liveness.next_ping_at,
            self.held_until,
            self.close_deadline(),
            self.stall_deadline(),
            self.chunks.release_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// When the PONG to our outstanding PING is overdue (smux: when the peer has been silent
    /// for too long), if it can be (durations too long to add to the clock mean never).
    pub(super) fn ping_deadline(&self) -> Option<Instant> {
        self.liveness.interval?;
        let since = match self.dialect.pings() {
            true => self.liveness.ping_sent_at?,
            false => self.liveness.last_arrival?,
        };
        since.checked_add(self.liveness.timeout)
    }

    /// Fires timers due at `now`: a PING timed out or the next is due (in smux: nothing has
    /// arrived for `ping_timeout`, or the next keepalive NOP is due), a smux v2 writer stalled
    /// after the peer's FIN gives up, or the spent chunks may be idle.
    pub(crate) fn on_timeout(&mut self, now: Instant) {
        if self.end().is_some() {
            // Handles may keep an ended session for long.
            self.chunks.clear();
            return;
        }
        self.chunks.on_timeout(now);
        self.start_keepalive(now);
        if !self.dialect.pings() && self.reader_paused() {
            // We stopped reading (the receive budget is full): the peer's frames wait unread,
            // so its silence proves nothing (Go smux makes the same exception).
            self.liveness.last_arrival = Some(now);
        }
        if self.ping_deadline().is_some_and(|at| now >= at) {
            let timeout = self.liveness.timeout;
            let message = match self.dialect.pings() {
                true => format!("ping timeout: no PONG from the peer within {timeout:?}"),
                false => format!(
                    "keepalive timeout: nothing received from the peer within {timeout:?} \
                     (ping_timeout)"
                ),
            };
            self.fail(io::ErrorKind::TimedOut, message);
            return;
        }
        self.on_close_deadline(now);
        self.fail_stalled_writes(now);
        if self.liveness.next_ping_at.is_some_and(|at| now >= at) {
            self.liveness.next_ping_at = None;
            self.liveness.ping_wanted = true;
            self.wake_writer();
        }
        if !self.held.is_empty() && !self.queue_too_long(now) && !self.pacing_holds(now) {
            // The PONG is too late to wait for, or the pacer allows: release the held streams
            // (this also ends the hold deadline, so the timer does not fire again).
            self.data_queue.extend(self.held.drain(..));
            self.wake_writer();
        }
        self.update_hold_release(now);
    }

    pub(crate) fn set_timer_waker(&mut self, waker: &Waker) {
        self.timer_waker = Some(waker.clone());
    }

    pub(crate) fn last_rtt(&self) -> Option<Duration> {
        self.liveness.last_rtt
    }
}
