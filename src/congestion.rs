//! Pacing of bulk frames while small messages share the session: the queue the bulk data builds
//! ahead of a message is kept small without starving the bulk.
//!
//! The model is BBR's: the path is a pipe with a bottleneck rate and a minimum round trip, and a
//! sender that sends at the bottleneck rate keeps about one bandwidth × delay product in flight,
//! fills the link and builds no queue. Both quantities are measured, not configured:
//!
//! - the round trip: PING round trips, the smallest seen being the path's own delay (the session
//!   measures them, see `Liveness`);
//! - the bottleneck rate: a PONG proves that every byte sent before its PING has reached the
//!   peer, so the bytes sent between two PINGs over the time between their PONGs is a delivery
//!   rate sample (over the send interval if that was longer, as BBR does, so that PONGs bunched
//!   by a queue cannot pass for a faster path). The largest of the last [`RATE_SAMPLES`] is the
//!   estimate: a queue or a pause only lowers samples.
//!
//! While messages flow, bulk frames are paced (a token bucket [`BURST`] deep) at a multiple of
//! the estimate. Until a PING first finds a queue at the bottleneck, the estimate only says
//! what the sender managed so far (a window still growing, a transfer just begun), so the pacer
//! starts as BBR's STARTUP does, at [`STARTUP_GAIN_64THS`]/64 (2×): the rate may double every
//! round trip. Once a queue shows the pipe full, the gain drops to
//! [`PACING_GAIN_64THS`]/64 (1.016×), or less where that excess would add more than
//! [`MAX_EXCESS_QUEUE_PER_ROUND`] of queue a round trip (paths over 32 ms). That small excess
//! lets the rate follow a path that got faster; the queue it builds, and the one already there
//! when messages began, is drained from what the PINGs measure: a round trip more than
//! [`QUEUE_TARGET_DIVISOR`]th of the minimum (at most [`MAX_QUEUE_TARGET`]) over it means a
//! queue of that many seconds of the bottleneck's rate, so the pacer sends nothing for that
//! long, and then resumes with an empty bucket (no burst saved up during the drain).
//! A PING sent during a drain counts only for what it saw beyond the rest of that drain (which
//! removes the rest), so every round trip drains what the previous drain left; the queue then
//! stands at about twice what the excess rate adds in a round trip.
//!
//! A delivery sample is kept only if it raises the estimate when the sender, not the path, set
//! its pace: its round included a drain, or a moment with nothing queued to send (the
//! application wrote too little to fill the path). BBR treats such application-limited samples
//! so. Without that, the few bytes of the session's first round trips would stand as the
//! path's rate, and bulk would be paced at a crawl (traced: 45 B/s, bulk held until the next
//! keepalive PING, 30 s later). For the same reason, and as BBR keeps a minimum window, the
//! pacing rate is never below [`MIN_BURST_BYTES`] a round trip: a wrong estimate holds bulk
//! back for a round trip at most.
//!
//! Pacing needs a timer that resolves well under the round trip: on paths under
//! [`MIN_PACED_RTT`] it stays off (the session then keeps messages fast by other means).

use std::time::{Duration, Instant};

/// Delivery rate samples (one per PING round trip) the estimate is the largest of: as BBR's
/// ten-round bandwidth filter.
pub(crate) const RATE_SAMPLES: usize = 10;

/// Bulk frames are paced at up to this many 64ths of the estimated rate (1.016×; less on paths
/// over 32 ms, see [`MAX_EXCESS_QUEUE_PER_ROUND`]): enough to notice a
/// faster path within a few dozen round trips, little enough that the queue it builds between
/// two drains stays a few percent of the round trip: the queue stands at about twice the
/// excess times the round trip, and the estimate (the largest of noisy samples) is itself
/// 0.2-3% above the path's rate, so 66/64 kept 9-10 ms standing at 150 ms (docs/performance.md).
const PACING_GAIN_64THS: u64 = 65;

/// The most queue the pacing gain's excess may add in a round trip: 1/64 of the rate adds
/// 2.3 ms a round trip at 150 ms, which messages wait behind until the next drain; on paths
/// over 32 ms the excess is the fraction of the rate that adds this much (1/300 at 150 ms).
const MAX_EXCESS_QUEUE_PER_ROUND: Duration = Duration::from_micros(500);

/// Round trips in a row that must find a queue before the pipe counts as full.
const PIPE_FULL_ROUNDS: u8 = 2;

/// The pacing gain until the pipe is known to be full (see the module documentation), in 64ths:
/// twice the delivery rate measured so far, so a transfer that starts beside messages reaches
/// the link's rate in a few round trips (log2 of the ratio), not in dozens.
const STARTUP_GAIN_64THS: u64 = 128;

/// How long the pacer may send at once after being idle: bursts of at most this much of the
/// rate (and at least [`MIN_BURST_BYTES`]) go out back to back, so the timer that paces them
/// fires about once a millisecond, not once a frame.
pub(crate) const BURST: Duration = Duration::from_millis(2);

/// The smallest burst: two full frames, so that one frame never waits for a timer.
const MIN_BURST_BYTES: u64 = 2 * 65_535;

/// A queue is drained once it exceeds this fraction of the minimum round trip (at most
/// [`MAX_QUEUE_TARGET`]), plus [`QUEUE_SLACK`]; the uncapped fraction plus the slack is also
/// the queue that shows the pipe full.
pub(crate) const QUEUE_TARGET_DIVISOR: u32 = 20;

/// The queue target is at most this (plus [`QUEUE_SLACK`]): on a long path a twentieth of the
/// round trip is itself a long wait for a message (8.5 ms at 150 ms, where a message's p99 was
/// 14-15 ms; 4.5-7.3 ms with this cap and [`MAX_EXCESS_QUEUE_PER_ROUND`], docs/performance.md).
/// Whether the pipe is full is still judged by the uncapped fraction, so the scheduler's
/// hiccups do not end STARTUP; a hiccup over the capped target does make bulk wait for it
/// during STARTUP too, as a queue would (a few milliseconds, once).
const MAX_QUEUE_TARGET: Duration = Duration::from_micros(1_500);

/// Added to the queue target: the jitter of timers and schedulers, which a PING's round trip
/// also measures.
const QUEUE_SLACK: Duration = Duration::from_millis(1);

/// Paths with a shorter minimum round trip are not paced: timers fire to about a millisecond,
/// and a burst ([`BURST`]) would be most of such a round trip.
pub(crate) const MIN_PACED_RTT: Duration = Duration::from_millis(2);

/// The path model and the pacer. See the module documentation.
#[derive(Debug)]
pub(crate) struct Pacer {
    /// Bytes of PSH bodies encoded so far, on every stream.
    sent: u64,
    /// The outstanding PING.
    ping: Option<Ping>,
    /// Whether nothing was queued to send at some moment since the latest PING was encoded
    /// (see [`Pacer::on_idle`]).
    idle_since_ping: bool,
    /// `sent` as of the previous PING, when it was encoded and when its PONG came.
    last_delivery: Option<Delivery>,
    /// The latest delivery rate samples in bytes per second, a ring.
    rates: [u64; RATE_SAMPLES],
    next_rate: usize,
    /// The time by which the bytes charged so far may all have gone out at the pacing rate
    /// (none while nothing is paced).
    paid_until: Option<Instant>,
    /// `sent` as of the latest [`Pacer::settle`].
    charged: u64,
    /// The pacing rate of the latest [`Pacer::settle`] (none while nothing is paced).
    rate: Option<u64>,
    /// The end of the latest drain: no bulk frame goes before it, and PINGs encoded before it
    /// measured the queue that it removes.
    drained_until: Option<Instant>,
    /// Whether a PING has found a queue at the bottleneck: the delivery rate then is the
    /// path's, and the pacer leaves its startup gain.
    pipe_full: bool,
    /// PONGs in a row that found a queue beyond the target.
    queued_rounds: u8,
}

#[derive(Clone, Copy, Debug)]
struct Ping {
    /// `sent` when it was encoded.
    sent: u64,
    at: Instant,
    /// Nothing was queued to send at some moment since the PING before it: the application
    /// limited the round that ends with this PING.
    app_limited: bool,
}

#[derive(Clone, Copy, Debug)]
struct Delivery {
    sent: u64,
    ping_at: Instant,
    pong_at: Instant,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            sent: 0,
            ping: None,
            idle_since_ping: false,
            last_delivery: None,
            rates: [0; RATE_SAMPLES],
            next_rate: 0,
            paid_until: None,
            charged: 0,
            rate: None,
            drained_until: None,
            pipe_full: false,
            queued_rounds: 0,
        }
    }
}

impl Pacer {
    /// Counts `bytes` of a PSH body just encoded (a message's or bulk).
    pub(crate) fn on_sent(&mut self, bytes: usize) {
        self.sent += bytes as u64;
    }

    /// The writer found nothing to send, and nothing is queued (the session's send buffers are
    /// empty): the application, not the path, limits the current round.
    pub(crate) fn on_idle(&mut self) {
        self.idle_since_ping = true;
    }

    /// A PING was just encoded, after everything counted so far.
    pub(crate) fn on_ping_sent(&mut self, now: Instant) {
        self.ping = Some(Ping {
            sent: self.sent,
            at: now,
            app_limited: std::mem::take(&mut self.idle_since_ping),
        });
    }

    /// The PONG to the outstanding PING came at `now`. `min_rtt` is the smallest round trip
    /// measured (this one included); `pacing` says whether bulk frames are being paced, so that
    /// the queue this PING measured is to be drained.
    pub(crate) fn on_pong(&mut self, now: Instant, min_rtt: Duration, pacing: bool) {
        let Some(Ping {
            sent,
            at: ping_at,
            app_limited,
        }) = self.ping.take()
        else {
            return;
        };
        if let Some(last) = self.last_delivery {
            let interval = now
                .saturating_duration_since(last.pong_at)
                .max(ping_at.saturating_duration_since(last.ping_at));
            // Bulk waited for a drain during this round, or there was nothing to send: the
            // sender, not the path, set its pace.
            let drain_limited = self.drained_until.is_some_and(|until| until > last.ping_at);
            let sender_limited = drain_limited || app_limited;
            if let Some(rate) = per_second(sent - last.sent, interval) {
                if !sender_limited || self.bottleneck_rate().is_some_and(|max| rate > max) {
                    self.rates[self.next_rate] = rate;
                    self.next_rate = (self.next_rate + 1) % RATE_SAMPLES;
                }
            }
        }
        self.last_delivery = Some(Delivery {
            sent,
            ping_at,
            pong_at: now,
        });
        let queue = now
            .saturating_duration_since(ping_at)
            .saturating_sub(min_rtt);
        // One late PONG may be a scheduler's hiccup; two in a row are a queue.
        if queue > pipe_full_queue(min_rtt) {
            self.queued_rounds = self.queued_rounds.saturating_add(1);
            self.pipe_full |= self.queued_rounds >= PIPE_FULL_ROUNDS;
        } else {
            self.queued_rounds = 0;
        }
        if queue <= queue_target(min_rtt) {
            return;
        }
        // A PING sent during a drain saw a queue that the rest of that drain removes; only
        // what it saw beyond that still stands. (Ignoring such PINGs left standing what the
        // sender's excess over the bottleneck rate added during the PING's round trip: 3-4 ms
        // at 50 ms / 200 Mbit/s, traced.)
        let drain_ahead = self.drained_until.map_or(Duration::ZERO, |until| {
            until.saturating_duration_since(ping_at)
        });
        let standing = queue.saturating_sub(drain_ahead);
        if pacing && !standing.is_zero() {
            // Send nothing for as long as the bottleneck needs to empty the queue...
            let drained_at = now + standing;
            self.drained_until = Some(drained_at);
            // ... and after that, the bucket starts empty: the burst it would save up during
            // the drain would go out at once and put part of the queue straight back (the
            // smallest burst is 5 ms of a 25 MB/s bottleneck; traced, it kept a queue of
            // 12 ms standing at 50 ms / 200 Mbit/s).
            if let (Some(rate), Some(paid)) = (self.rate, self.paid_until) {
                self.paid_until = Some(paid.max(drained_at + burst_time(rate)));
            }
        }
    }

    /// The estimated bottleneck rate in bytes per second, once measured.
    pub(crate) fn bottleneck_rate(&self) -> Option<u64> {
        self.rates.iter().copied().max().filter(|&rate| rate > 0)
    }

    /// The bandwidth × delay product in bytes, once the rate is measured.
    pub(crate) fn bdp(&self, min_rtt: Duration) -> Option<u64> {
        let rate = self.bottleneck_rate()?;
        Some((u128::from(rate) * min_rtt.as_nanos() / 1_000_000_000) as u64)
    }

    /// The pacing rate on a path of `min_rtt`: none (no pacing) on a short path or before the
    /// bottleneck rate is known, and at least [`MIN_BURST_BYTES`] a round trip.
    pub(crate) fn pacing_rate(&self, min_rtt: Option<Duration>) -> Option<u64> {
        let min_rtt = min_rtt?;
        if min_rtt < MIN_PACED_RTT {
            return None;
        }
        let estimate = self.bottleneck_rate()?;
        let rate = if self.pipe_full {
            // 1/64 of the estimate, or what adds MAX_EXCESS_QUEUE_PER_ROUND a round trip.
            let excess = estimate.saturating_mul(PACING_GAIN_64THS - 64) / 64;
            let capped =
                u128::from(estimate) * MAX_EXCESS_QUEUE_PER_ROUND.as_nanos() / min_rtt.as_nanos();
            estimate.saturating_add(excess.min(u64::try_from(capped).unwrap_or(u64::MAX)))
        } else {
            estimate.saturating_mul(STARTUP_GAIN_64THS) / 64
        };
        let floor = per_second(MIN_BURST_BYTES, min_rtt).unwrap_or(u64::MAX);
        Some(rate.max(floor))
    }

    /// Charges the bytes sent since the previous call to the pacer at `rate` (`None`: nothing
    /// is paced). Bytes sent while nothing was paced are not charged: pacing starts with a full
    /// bucket.
    pub(crate) fn settle(&mut self, now: Instant, rate: Option<u64>) {
        let uncharged = self.sent - self.charged;
        self.charged = self.sent;
        self.rate = rate;
        let Some(rate) = rate else {
            self.paid_until = None;
            return;
        };
        // An idle bucket holds one burst, no more: time not spent sending is not saved up.
        self.paid_until = Some(match self.paid_until {
            Some(paid) => (paid + time_for(uncharged, rate)).max(now),
            None => now,
        });
    }

    /// When bulk frames may go again at `rate`: once the bytes sent (those since the latest
    /// [`Pacer::settle`] too) are paid off but for one burst, and any drain is over.
    pub(crate) fn release_at(&self, rate: u64) -> Option<Instant> {
        let paced = self.paid_until.map(|paid| {
            let paid = paid + time_for(self.sent - self.charged, rate);
            paid.checked_sub(burst_time(rate)).unwrap_or(paid)
        });
        paced.max(self.drained_until)
    }

    /// Whether a bulk frame may go at `now` at `rate`.
    pub(crate) fn may_send(&self, now: Instant, rate: u64) -> bool {
        self.release_at(rate).is_none_or(|at| at <= now)
    }
}

/// How much queue is let stand before it is drained.
fn queue_target(min_rtt: Duration) -> Duration {
    (min_rtt / QUEUE_TARGET_DIVISOR).min(MAX_QUEUE_TARGET) + QUEUE_SLACK
}

/// How much queue shows the pipe full: more than a scheduler's hiccup, however long the path.
fn pipe_full_queue(min_rtt: Duration) -> Duration {
    min_rtt / QUEUE_TARGET_DIVISOR + QUEUE_SLACK
}

/// The burst the bucket holds at `rate`, as time.
fn burst_time(rate: u64) -> Duration {
    let burst = (u128::from(rate) * BURST.as_nanos() / 1_000_000_000) as u64;
    time_for(burst.max(MIN_BURST_BYTES), rate)
}

/// How long `bytes` take at `rate` bytes per second.
fn time_for(bytes: u64, rate: u64) -> Duration {
    let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// `bytes` over `interval`, per second; none for an interval too short to measure.
fn per_second(bytes: u64, interval: Duration) -> Option<u64> {
    let nanos = interval.as_nanos();
    if nanos < 100_000 {
        return None;
    }
    u64::try_from(u128::from(bytes) * 1_000_000_000 / nanos).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Plays `rounds` PING round trips of `rtt`, with `rate` bytes per second sent meanwhile.
    fn measure(pacer: &mut Pacer, t: &mut Instant, rtt: Duration, rate: u64, rounds: usize) {
        for _ in 0..rounds {
            pacer.on_sent((rate as u128 * rtt.as_nanos() / 1_000_000_000) as usize);
            pacer.on_ping_sent(*t);
            *t += rtt;
            pacer.on_pong(*t, rtt, false);
        }
    }

    #[test]
    fn the_rate_is_the_largest_recent_delivery_sample() {
        let mut p = Pacer::default();
        let mut t = Instant::now();
        assert_eq!(p.bottleneck_rate(), None);
        measure(&mut p, &mut t, 50 * MS, 25_000_000, 3);
        assert_eq!(p.bottleneck_rate(), Some(25_000_000));
        // A pause (the application wrote nothing) lowers samples, not the estimate.
        measure(&mut p, &mut t, 50 * MS, 1_000_000, RATE_SAMPLES - 1);
        assert_eq!(p.bottleneck_rate(), Some(25_000_000));
        // Once every sample in the filter is slower, so is the estimate.
        measure(&mut p, &mut t, 50 * MS, 1_000_000, 1);
        assert_eq!(p.bottleneck_rate(), Some(1_000_000));
        assert_eq!(p.bdp(50 * MS), Some(50_000));
    }

    /// As [`measure`], with nothing left to send at some moment of each round.
    fn measure_idle(pacer: &mut Pacer, t: &mut Instant, rtt: Duration, rate: u64, rounds: usize) {
        for _ in 0..rounds {
            pacer.on_idle();
            measure(pacer, t, rtt, rate, 1);
        }
    }

    #[test]
    fn rounds_the_application_left_idle_count_only_if_they_raise_the_rate() {
        let mut p = Pacer::default();
        let mut t = Instant::now();
        // A few bytes a round trip say what the application wrote, not what the path carries.
        measure_idle(&mut p, &mut t, 50 * MS, 100, 3);
        assert_eq!(p.bottleneck_rate(), None);
        measure(&mut p, &mut t, 50 * MS, 10_000_000, 1);
        assert_eq!(p.bottleneck_rate(), Some(10_000_000));
        // An idle round that still delivered more shows a faster path; slower ones say nothing,
        // however many.
        measure_idle(&mut p, &mut t, 50 * MS, 20_000_000, 1);
        assert_eq!(p.bottleneck_rate(), Some(20_000_000));
        measure_idle(&mut p, &mut t, 50 * MS, 1_000, 2 * RATE_SAMPLES);
        assert_eq!(p.bottleneck_rate(), Some(20_000_000));
    }

    #[test]
    fn bulk_is_paced_at_two_full_frames_a_round_trip_or_faster() {
        let mut p = Pacer::default();
        let mut t = Instant::now();
        // A stream that a slow reader's window held to 1 kB/s.
        measure(&mut p, &mut t, 50 * MS, 1_000, 2);
        assert_eq!(p.bottleneck_rate(), Some(1_000));
        let floor = 2 * 65_535 * 20; // two frames per 50 ms
        assert_eq!(p.pacing_rate(Some(50 * MS)), Some(floor));
    }

    #[test]
    fn the_excess_over_a_full_pipe_adds_at_most_half_a_millisecond_of_queue_a_round_trip() {
        // 1/64 of the rate at 20 ms (0.3 ms of queue a round trip); 1/300 at 150 ms.
        for (rtt, expected) in [(20 * MS, 10_156_250), (150 * MS, 10_033_333)] {
            let mut p = Pacer::default();
            let mut t = Instant::now();
            measure(&mut p, &mut t, rtt, 10_000_000, 2);
            for _ in 0..PIPE_FULL_ROUNDS {
                p.on_ping_sent(t);
                t += rtt + rtt / 2;
                p.on_pong(t, rtt, false);
            }
            assert_eq!(p.pacing_rate(Some(rtt)), Some(expected), "{rtt:?}");
        }
    }

    #[test]
    fn bunched_pongs_do_not_pass_for_a_faster_path() {
        let mut p = Pacer::default();
        let t = Instant::now();
        p.on_ping_sent(t);
        p.on_pong(t + 50 * MS, 50 * MS, false);
        // 1 MB sent over 100 ms, but the PONG came only 1 ms after the previous one.
        p.on_sent(1_000_000);
        p.on_ping_sent(t + 100 * MS);
        p.on_pong(t + 51 * MS, 50 * MS, false);
        assert_eq!(p.bottleneck_rate(), Some(10_000_000));
    }

    #[test]
    fn short_paths_and_unmeasured_paths_are_not_paced() {
        let mut p = Pacer::default();
        let mut t = Instant::now();
        assert_eq!(p.pacing_rate(Some(50 * MS)), None);
        measure(&mut p, &mut t, 50 * MS, 64_000_000, 2);
        assert_eq!(p.pacing_rate(None), None);
        assert_eq!(p.pacing_rate(Some(MIN_PACED_RTT / 2)), None);
        assert!(p.pacing_rate(Some(50 * MS)).is_some());
    }

    #[test]
    fn the_pacer_doubles_the_rate_until_a_queue_shows_the_pipe_full() {
        let mut p = Pacer::default();
        let mut t = Instant::now();
        // PINGs with nothing sent (the session's first ones) say nothing about the pipe.
        measure(&mut p, &mut t, 50 * MS, 0, 5);
        measure(&mut p, &mut t, 50 * MS, 10_000_000, 2);
        assert_eq!(p.pacing_rate(Some(50 * MS)), Some(20_000_000));
        // Round trips 20 ms over the minimum: a queue at the bottleneck, so 10 MB/s is the
        // path's rate; from the second on, the pacer sends 1.01× that (one alone may be a
        // scheduler's hiccup; 1.01×: 1/64 more would add 0.8 ms of queue a round trip).
        for expected in [20_000_000, 10_100_000] {
            p.on_sent(500_000);
            p.on_ping_sent(t);
            t += 70 * MS;
            p.on_pong(t, 50 * MS, false);
            assert_eq!(p.pacing_rate(Some(50 * MS)), Some(expected));
        }
        // A round trip without a queue does not undo it.
        measure(&mut p, &mut t, 50 * MS, 10_000_000, 1);
        assert_eq!(p.pacing_rate(Some(50 * MS)), Some(10_100_000));
    }

    #[test]
    fn a_round_slowed_by_a_drain_does_not_lower_the_estimate() {
        let mut p = Pacer::default();
        let mut t = Instant::now();
        let rtt = 100 * MS;
        measure(&mut p, &mut t, rtt, 10_000_000, 2);
        // Eight samples in the filter, the 10 MB/s one the oldest.
        measure(&mut p, &mut t, rtt, 1_000_000, RATE_SAMPLES - 3);
        // A 50 ms queue (the ninth sample): bulk waits 50 ms.
        p.on_sent(100_000);
        p.on_ping_sent(t);
        t += rtt + 50 * MS;
        p.on_pong(t, rtt, true);
        // The two rounds whose sending overlapped the drain deliver little, and are not
        // counted: else the second would push the 10 MB/s sample out.
        measure(&mut p, &mut t, rtt, 100_000, 2);
        assert_eq!(p.bottleneck_rate(), Some(10_000_000));
        // Later rounds count again.
        measure(&mut p, &mut t, rtt, 1_000_000, 2);
        assert_eq!(p.bottleneck_rate(), Some(1_000_000));
    }

    #[test]
    fn a_paced_sender_sends_a_burst_then_the_rate() {
        let mut p = Pacer::default();
        let t = Instant::now();
        let rate = 100_000_000; // 100 MB/s: the 2 ms burst is 200 kB
        p.settle(t, Some(rate));
        assert!(p.may_send(t, rate));
        p.on_sent(200_000);
        assert!(p.may_send(t, rate), "the burst itself may go at once");
        p.on_sent(1);
        assert!(!p.may_send(t, rate));
        p.settle(t, Some(rate));
        assert!(!p.may_send(t, rate));
        // 1 MB more is paid off 10 ms later, at the rate.
        p.on_sent(1_000_000);
        assert!(!p.may_send(t + 10 * MS, rate));
        assert!(p.may_send(t + 11 * MS, rate));
        // Idle, the bucket fills up to one burst, no more.
        p.settle(t + 1000 * MS, Some(rate));
        p.on_sent(200_000);
        assert!(p.may_send(t + 1000 * MS, rate));
        p.on_sent(1_000);
        assert!(!p.may_send(t + 1000 * MS, rate));
    }

    #[test]
    fn sending_unpaced_leaves_no_debt_for_when_pacing_starts() {
        let mut p = Pacer::default();
        let t = Instant::now();
        p.on_sent(1 << 30);
        p.settle(t, None);
        assert!(p.may_send(t, 1));
        p.settle(t, Some(1_000_000));
        assert!(p.may_send(t, 1_000_000));
    }

    #[test]
    fn a_measured_queue_is_drained_once() {
        let mut p = Pacer::default();
        let mut t = Instant::now();
        let rtt = 100 * MS;
        let rate = 10_000_000;
        measure(&mut p, &mut t, rtt, rate, 2);
        p.settle(t, Some(rate));
        assert!(p.may_send(t, rate));
        // A PING that waited 40 ms behind a queue: bulk waits 40 ms.
        p.on_ping_sent(t);
        t += rtt + 40 * MS;
        p.on_pong(t, rtt, true);
        assert!(!p.may_send(t + 39 * MS, rate));
        assert!(p.may_send(t + 40 * MS, rate));
        // The next PING went out 1 ms into that drain and saw what was left of the same queue,
        // which the rest of the drain removes: no second drain.
        p.on_ping_sent(t + MS);
        p.on_pong(t + MS + rtt + 39 * MS, rtt, true);
        assert!(p.may_send(t + MS + rtt + 39 * MS, rate));
        // One sent after the drain that finds a queue again drains it again.
        let later = t + 200 * MS;
        p.on_ping_sent(later);
        p.on_pong(later + rtt + 20 * MS, rtt, true);
        assert!(!p.may_send(later + rtt + 19 * MS, rate));
        // A queue within the target (1.5 ms + 1 ms) is let stand, and so is any queue while
        // nothing is paced.
        let later = later + 400 * MS;
        p.on_ping_sent(later);
        p.on_pong(later + rtt + 2 * MS, rtt, true);
        assert!(p.may_send(later + rtt + 2 * MS, rate));
        p.on_ping_sent(later + rtt);
        p.on_pong(later + 3 * rtt, rtt, false);
        assert!(p.may_send(later + 3 * rtt, rate));
    }

    #[test]
    fn on_a_long_path_a_few_milliseconds_of_queue_are_drained_but_do_not_end_startup() {
        let mut p = Pacer::default();
        let mut t = Instant::now();
        let rtt = 150 * MS;
        let rate = 100_000_000;
        measure(&mut p, &mut t, rtt, rate, 2);
        p.settle(t, Some(2 * rate));
        // 6 ms of queue, a twenty-fifth of the round trip: a message would wait behind it, so
        // bulk waits 6 ms...
        for _ in 0..2 {
            p.on_ping_sent(t);
            t += rtt + 6 * MS;
            p.on_pong(t, rtt, true);
            assert!(!p.may_send(t + 5 * MS, 2 * rate));
            assert!(p.may_send(t + 6 * MS, 2 * rate));
            t += 6 * MS;
        }
        // ... but two such round trips in a row are not yet the pipe full (RTT/20 + 1 ms): the
        // rate still doubles.
        assert_eq!(p.pacing_rate(Some(rtt)), Some(2 * rate));
    }

    #[test]
    fn a_drain_leaves_no_burst_to_send_after_it() {
        let mut p = Pacer::default();
        let mut t = Instant::now();
        let rtt = 100 * MS;
        let rate = 100_000_000; // 100 MB/s: the 2 ms burst is 200 kB
        measure(&mut p, &mut t, rtt, rate, 2);
        p.settle(t, Some(rate));
        // A 10 ms queue: nothing goes for 10 ms...
        p.on_ping_sent(t);
        t += rtt + 10 * MS;
        p.on_pong(t, rtt, true);
        assert!(!p.may_send(t + 9 * MS, rate));
        let end = t + 10 * MS;
        p.settle(end, Some(rate));
        assert!(p.may_send(end, rate));
        // ... and then the rate, not a burst saved up during the drain: 1 ms of the rate (100
        // kB) is paid off 1 ms later.
        p.on_sent(100_000);
        assert!(!p.may_send(end, rate));
        assert!(!p.may_send(end + MS / 2, rate));
        assert!(p.may_send(end + MS, rate));
    }

    #[test]
    fn a_ping_sent_during_a_drain_drains_what_it_saw_beyond_it() {
        let mut p = Pacer::default();
        let mut t = Instant::now();
        let rtt = 100 * MS;
        let rate = 10_000_000;
        measure(&mut p, &mut t, rtt, rate, 2);
        p.settle(t, Some(rate));
        // A 20 ms queue: drained until t + 20 ms.
        p.on_ping_sent(t);
        t += rtt + 20 * MS;
        p.on_pong(t, rtt, true);
        // A PING sent 5 ms into that drain saw a 30 ms queue: the remaining 15 ms of the
        // drain remove half of it, the other 15 ms stand and are drained when its PONG comes.
        let ping = t + 5 * MS;
        p.on_ping_sent(ping);
        let pong = ping + rtt + 30 * MS;
        p.on_pong(pong, rtt, true);
        p.settle(pong, Some(rate));
        assert!(!p.may_send(pong + 14 * MS, rate));
        assert!(p.may_send(pong + 15 * MS, rate));
    }
}
