//! Hostile peers that flood: a scripted raw-frame peer writes the frames by hand and checks both
//! the outcome (the session survives, or ends with the promised error) and that memory stays
//! bounded, through `Mux::stats()` sampled while the flood runs and, where the counters cannot
//! see it (the metadata held by the accept backlog), through the process's resident set.
//!
//! Scale: each flood is sized so that the whole file runs in a few seconds in a debug build on 2
//! cores, while staying far past every limit it tests (the counts are in each test's constants).
//! There are no timing thresholds: waits are bounded by the hang guard of `support::run` only,
//! and the one short pause (in `a_peer_that_never_reads_...`) checks that nothing moves.
//!
//! RSS is process-wide and the tests of this binary run in parallel threads, so RSS checks are
//! loose; the exact bounds are on `Mux::stats()`.

mod support;

use std::io::{self, ErrorKind};
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, Cursor};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smol::Task;
use smolmux::frame::{Command, Header, HEADER_LEN};
use smolmux::{Config, Mux, Stats};
use support::mock_peer::{
    abort, concat, fin, mock_pair, more, nop, ping, psh, raw_frame, syn, Frame, MockPeer,
    FRAME_TIMEOUT, GOOD_VERSION,
};
use support::*;

const REFUSED_MAX_STREAMS: &[u8] = b"stream refused: max_streams reached";
const REFUSED_BACKLOG: &[u8] = b"stream refused: accept backlog full";

/// A config for floods: no periodic PING, so a mock that does not answer the mux's start-up
/// PINGs cannot time the session out while it floods.
fn quiet(config: Config) -> Config {
    config.clone().ping_interval(None)
}

// ----- the mock's side -----

/// Reads the mux's frames from a clone of the mock's socket, efficiently enough for floods of
/// 100k frames (the buffer is compacted once per read, not once per frame). Once a test reads
/// through one of these, it no longer reads through its `MockPeer`.
struct FrameReader {
    tcp: TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl FrameReader {
    fn new(mock: &MockPeer) -> Self {
        FrameReader {
            tcp: mock.tcp.clone(),
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// The next frame; `None` at EOF (or a reset) on a frame boundary.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            let avail = &self.buf[self.pos..];
            if avail.len() >= HEADER_LEN {
                let header = Header::decode(avail[..HEADER_LEN].try_into().unwrap())
                    .expect("the mux sent a bad header");
                let end = HEADER_LEN + header.body_len as usize;
                if avail.len() >= end {
                    let frame = Frame {
                        command: header.command,
                        stream_id: header.stream_id,
                        body: avail[HEADER_LEN..end].to_vec(),
                    };
                    self.pos += end;
                    return Some(frame);
                }
            }
            self.buf.drain(..self.pos);
            self.pos = 0;
            let old = self.buf.len();
            self.buf.resize(old + (64 << 10), 0);
            let read = within(FRAME_TIMEOUT, self.tcp.read(&mut self.buf[old..])).await;
            let n = match read {
                None => panic!("mock reader: no frame from the mux within {FRAME_TIMEOUT:?}"),
                Some(Ok(n)) => n,
                Some(Err(err)) if err.kind() == ErrorKind::ConnectionReset => 0,
                Some(Err(err)) => panic!("mock reader: {err}"),
            };
            self.buf.truncate(old + n);
            if n == 0 {
                assert!(self.buf.is_empty(), "EOF inside a frame from the mux");
                return None;
            }
        }
    }

    /// The next frame that is not PING or PONG (PINGs are not answered: floods run with
    /// `ping_interval: None`).
    async fn next_non_liveness(&mut self) -> Frame {
        loop {
            let frame = self.next().await.expect("the mux closed the connection");
            if !frame.is_liveness() {
                return frame;
            }
        }
    }

    /// The next SYN, PSH or FIN: like [`FrameReader::next_non_liveness`], and MOREs (credits
    /// for what the application read) are skipped too.
    async fn next_stream_frame(&mut self) -> Frame {
        loop {
            let frame = self.next_non_liveness().await;
            if frame.command != Command::More {
                return frame;
            }
        }
    }
}

/// Reads, in a task, one refusal per id of `ids`, in order: a FIN whose body is `reason`.
/// Returns the reader for any frames that follow.
fn expect_refusals(
    mut reader: FrameReader,
    ids: std::ops::RangeInclusive<u32>,
    reason: &'static [u8],
) -> Task<FrameReader> {
    spawn(async move {
        for id in ids {
            let frame = reader.next_non_liveness().await;
            assert_eq!(
                (frame.command, frame.stream_id, &frame.body[..]),
                (Command::Fin, id, reason),
                "every SYN past the limit is refused, in order"
            );
        }
        reader
    })
}

/// Reads up to the next PONG; returns the other non-liveness frames read on the way.
async fn wait_pong(mock: &mut MockPeer) -> Vec<Frame> {
    let mut others = Vec::new();
    loop {
        let frame = mock.next_frame().await;
        match frame.command {
            Command::Pong => return others,
            // A start-up PING (with no ping interval it needs no answer), or stream credits as
            // the table frees up.
            _ if frame.is_liveness() => {}
            _ => others.push(frame),
        }
    }
}

/// The handshake, then the PONG that answers its PING, so that the next PONG answers the next
/// PING the mock sends (see [`sync`]).
async fn handshake(mock: &mut MockPeer) {
    mock.handshake().await;
    assert!(wait_pong(mock).await.is_empty());
}

/// Sends a PING and waits for its PONG: the mux handles frames in order, so every frame sent
/// before has been handled. Returns the other frames read on the way.
async fn sync(mock: &mut MockPeer) -> Vec<Frame> {
    mock.send(&ping(1_800_000, true)).await;
    wait_pong(mock).await
}

/// Frames for each id of `ids`.
fn frames_for(ids: Range<u32>, each: impl Fn(u32) -> Vec<Vec<u8>>) -> Vec<u8> {
    ids.flat_map(each).collect::<Vec<_>>().concat()
}

// ----- watching memory -----

/// The process's resident set in KiB (Linux), or `None` where /proc is not available.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// Asserts that the resident set grew by at most `bound_kib` since `before`.
#[track_caller]
fn assert_rss_growth(before: Option<u64>, bound_kib: u64, what: &str) {
    if let (Some(before), Some(after)) = (before, rss_kib()) {
        let growth = after.saturating_sub(before);
        assert!(
            growth <= bound_kib,
            "{what}: RSS grew by {growth} KiB ({before} -> {after}), bound {bound_kib} KiB"
        );
    }
}

/// Samples `mux.stats()` every millisecond in a task, checking each sample with `check`.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: Task<(Stats, usize)>,
}

impl Sampler {
    fn spawn(mux: &Mux, check: impl Fn(&Stats) + Send + 'static) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let mux = mux.clone();
        let task = spawn({
            let stop = stop.clone();
            async move {
                let mut max = Stats::default();
                let mut samples = 0;
                while !stop.load(Ordering::Relaxed) {
                    let stats = mux.stats();
                    check(&stats);
                    max.open_streams = max.open_streams.max(stats.open_streams);
                    max.pending_accept = max.pending_accept.max(stats.pending_accept);
                    max.recv_buffered_bytes =
                        max.recv_buffered_bytes.max(stats.recv_buffered_bytes);
                    max.send_buffered_bytes =
                        max.send_buffered_bytes.max(stats.send_buffered_bytes);
                    samples += 1;
                    sleep(Duration::from_millis(1)).await;
                }
                (max, samples)
            }
        });
        Sampler { stop, task }
    }

    /// Stops sampling; returns the largest value of each counter and the number of samples.
    async fn finish(self) -> (Stats, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let (max, samples) = self.task.await;
        assert!(samples > 0, "the sampler never ran");
        (max, samples)
    }
}

// ----- 1. MORE credit overflow -----

#[test]
fn more_credit_overflow_saturates_and_the_stream_still_flows() {
    // 100,000 grants of 65,535 credits: about 6.6e9, past u32::MAX (a wrapping counter would
    // panic in this debug build, or restart near zero in a release build).
    const GRANTS: usize = 100_000;
    // 256 KiB in frames of 1 KiB: 256 PSH frames, far more than the 10 initial credits.
    const DATA: usize = 256 << 10;
    let config = quiet(Config::default().max_frame_body(1024));
    run(async move {
        let (mux, driver, mut mock) = mock_pair(config).await;
        handshake(&mut mock).await;
        let mut stream = mux.open(b"credit").await.unwrap();
        let id = stream.id();
        assert_eq!(mock.expect(Command::Syn, id).await.body, b"credit");

        mock.send(&more(id, u16::MAX).repeat(GRANTS)).await;
        assert!(sync(&mut mock).await.is_empty(), "MOREs need no answer");
        assert!(mux.is_alive());
        assert!(!driver.is_finished());
        let stats = mux.stats();
        assert_eq!((stats.open_streams, stats.pending_accept), (1, 0));
        assert_eq!(
            (stats.recv_buffered_bytes, stats.send_buffered_bytes),
            (0, 0)
        );

        // The stream still works, using the credits it holds.
        let data = pattern(1, DATA);
        let writer = spawn({
            let data = data.clone();
            async move {
                stream.write_all(&data).await?;
                stream.close().await?;
                io::Result::Ok(stream)
            }
        });
        let (mut got, mut frames) = (Vec::new(), 0);
        loop {
            let frame = mock.next_non_liveness().await;
            match (frame.command, frame.stream_id) {
                (Command::Psh, i) if i == id => {
                    frames += 1;
                    got.extend_from_slice(&frame.body);
                }
                (Command::Fin, i) if i == id => {
                    assert!(frame.body.is_empty(), "a half-close, not an abort");
                    break;
                }
                _ => panic!("unexpected frame from the mux: {frame:?}"),
            }
        }
        assert_eq!(got.len(), DATA);
        assert!(got == data, "the mock received other bytes than written");
        assert!(frames >= DATA / 1024, "{frames} PSH frames");
        let _stream = writer.await.unwrap();
        assert!(mux.is_alive());
        assert_eq!(mux.stats().send_buffered_bytes, 0);
    });
}

// ----- 2. rapid open-then-close churn -----

#[test]
fn open_then_fin_churn_keeps_the_table_within_its_limits() {
    // 100,000 streams opened and half-closed at once (SYN, empty FIN; 1.6 MB), in batches of
    // 100, while the application accepts and drops them concurrently. The mock runs at most
    // 300 streams ahead of the answers it has read (more than the table holds), so that the
    // acceptor keeps up with part of the flood and the rest overflows the limits: both the
    // accept-drop-remove path and the refusals run many times.
    const STREAMS: u32 = 100_000;
    const BATCH: u32 = 100;
    const AHEAD: u32 = 300;
    const MAX_STREAMS: usize = 128;
    const BACKLOG: usize = 32;
    let config = quiet(
        Config::default()
            .max_streams(MAX_STREAMS)
            .accept_backlog(BACKLOG),
    );
    run(async move {
        let (mux, driver, mut mock) = mock_pair(config).await;
        // The mock announces smolmux: an empty FIN is a half-close, so each stream the
        // application drops is answered by the mux's own FIN.
        handshake(&mut mock).await;
        let rss_before = rss_kib();

        // Every SYN gets exactly one FIN back: empty once the application dropped the stream,
        // with a reason if it was refused (the backlog or the table was full).
        let mut reader = FrameReader::new(&mock);
        let (answered_tx, answered) = async_channel::unbounded::<u32>();
        let fins = spawn(async move {
            let mut seen = vec![false; STREAMS as usize + 1];
            let (mut closed, mut refused) = (0u32, 0u32);
            while closed + refused < STREAMS {
                let frame = reader.next_non_liveness().await;
                let id = frame.stream_id;
                assert_eq!(frame.command, Command::Fin, "{frame:?}");
                assert!((1..=STREAMS).contains(&id), "FIN for unknown id {id}");
                assert!(!seen[id as usize], "second FIN for stream {id}");
                seen[id as usize] = true;
                if frame.body.is_empty() {
                    closed += 1;
                } else {
                    assert!(
                        frame.body == REFUSED_BACKLOG || frame.body == REFUSED_MAX_STREAMS,
                        "{frame:?}"
                    );
                    refused += 1;
                }
                let _ = answered_tx.try_send(closed + refused);
            }
            (closed, refused, reader)
        });
        let accepted = Arc::new(AtomicUsize::new(0));
        let acceptor = spawn({
            let (mux, accepted) = (mux.clone(), accepted.clone());
            async move {
                loop {
                    let stream = mux.accept().await.unwrap();
                    assert!(stream.metadata().is_empty());
                    accepted.fetch_add(1, Ordering::Relaxed);
                    drop(stream);
                }
            }
        });
        let within_limits = |stats: &Stats| {
            assert!(stats.open_streams <= MAX_STREAMS, "{stats:?}");
            assert!(stats.pending_accept <= BACKLOG, "{stats:?}");
            assert_eq!(stats.recv_buffered_bytes, 0, "{stats:?}");
            assert_eq!(stats.send_buffered_bytes, 0, "{stats:?}");
        };
        let sampler = Sampler::spawn(&mux, within_limits);

        let mut answers = 0;
        for first in (1..=STREAMS).step_by(BATCH as usize) {
            while first - 1 > answers + AHEAD {
                answers = answered.recv().await.unwrap();
            }
            mock.send(&frames_for(first..first + BATCH, |id| {
                vec![syn(id, b""), fin(id)]
            }))
            .await;
            within_limits(&mux.stats());
        }
        let (closed, refused, mut reader) = fins.await;
        let (max, samples) = sampler.finish().await;
        drop(acceptor);
        let accepted = accepted.load(Ordering::Relaxed);
        assert_eq!(closed as usize, accepted, "one FIN per accepted stream");
        assert!(accepted > 0, "the application accepted no stream");
        eprintln!(
            "churn: {accepted} accepted, {refused} refused; max {max:?} over {samples} samples"
        );

        eventually("every stream left the table", || {
            mux.stats().open_streams == 0
        })
        .await;
        assert_eq!(mux.stats().pending_accept, 0);
        assert!(mux.is_alive());
        assert!(!driver.is_finished());
        // 100k streams through the table cost nothing that lasts (loose: see the module doc).
        assert_rss_growth(rss_before, 64 << 10, "open-then-FIN churn");

        // A normal stream still works.
        mock.send(&concat(&[
            syn(STREAMS + 1, b"after"),
            psh(STREAMS + 1, b"hi"),
        ]))
        .await;
        let mut stream = mux.accept().await.unwrap();
        assert_eq!(
            (stream.id(), stream.metadata()),
            (STREAMS + 1, &b"after"[..])
        );
        let mut buf = [0u8; 2];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        stream.write_all(b"still here").await.unwrap();
        stream.flush().await.unwrap();
        let frame = reader.next_stream_frame().await;
        assert_eq!(
            (frame.command, frame.stream_id, &frame.body[..]),
            (Command::Psh, STREAMS + 1, &b"still here"[..])
        );
    });
}

#[test]
fn open_then_abort_before_accept_ends_the_session_past_1000_net_early_resets() {
    // The fixed limit of session.rs: 1,000 streams aborted before they were accepted, net of
    // the streams accepted. The churn goes exactly to the limit and one past it.
    const LIMIT: u32 = 1000;
    let churn = |ids: Range<u32>| frames_for(ids, |id| vec![syn(id, b"x"), abort(id, "nope")]);
    run(async move {
        let (mux, driver, mut mock) = mock_pair(quiet(Config::default())).await;
        handshake(&mut mock).await;

        // 1,000 early resets: at the limit. The aborted streams are dropped unseen.
        mock.send(&churn(1..LIMIT + 1)).await;
        assert!(sync(&mut mock).await.is_empty(), "nothing is sent for them");
        assert!(mux.is_alive());
        let stats = mux.stats();
        assert_eq!((stats.open_streams, stats.pending_accept), (0, 0));

        // Accepting a stream takes one off the net count, so one more reset is tolerated...
        mock.send(&syn(50_000, b"accepted")).await;
        assert!(sync(&mut mock).await.is_empty());
        let mut accepted = mux.accept().await.unwrap();
        assert_eq!(accepted.id(), 50_000);
        mock.send(&churn(LIMIT + 1..LIMIT + 2)).await;
        assert!(sync(&mut mock).await.is_empty());
        assert!(
            mux.is_alive(),
            "net early resets are back at the limit, not past it"
        );

        // ... and the next one is one too many.
        let mut pending_accept = Box::pin(mux.accept());
        assert_pending(&mut pending_accept, "accept").await;
        mock.send(&churn(LIMIT + 2..LIMIT + 3)).await;
        let err = assert_err(driver.await, ErrorKind::InvalidData, "rapid reset");
        assert!(err.to_string().contains("1001"), "{err}");
        assert_err(pending_accept.await, ErrorKind::InvalidData, "rapid reset");
        assert_err(
            accepted.read(&mut [0u8; 8]).await,
            ErrorKind::InvalidData,
            "rapid reset",
        );
        assert!(!mux.is_alive());
        let stats = mux.stats();
        assert_eq!(stats.pending_accept, 0);
        assert!(stats.open_streams <= 1, "{stats:?}");
        // The mux hangs up without having said anything about the aborted streams.
        mock.expect_eof().await;
    });
}

// ----- 3. SYN flood past max_streams -----

#[test]
fn syn_flood_past_max_streams_is_refused_with_fin_while_nobody_accepts() {
    // 20,000 SYNs against a table of 64 (backlog 256, so the table is the limit); nobody
    // accepts until the flood is over. 19,936 refusals: more than the 4,096 the mux queues
    // before it stops reading, so the flood also goes through that backpressure.
    const MAX_STREAMS: u32 = 64;
    const SYNS: u32 = 20_000;
    let config = quiet(Config::default().max_streams(MAX_STREAMS as usize));
    run(async move {
        let (mux, driver, mut mock) = mock_pair(config).await;
        handshake(&mut mock).await;
        let rss_before = rss_kib();

        let reader = FrameReader::new(&mock);
        let refusals = expect_refusals(reader, MAX_STREAMS + 1..=SYNS, REFUSED_MAX_STREAMS);
        let within_limits = |stats: &Stats| {
            assert!(stats.open_streams <= MAX_STREAMS as usize, "{stats:?}");
            assert!(stats.pending_accept <= MAX_STREAMS as usize, "{stats:?}");
        };
        let sampler = Sampler::spawn(&mux, within_limits);
        for first in (1..=SYNS).step_by(1000) {
            mock.send(&frames_for(first..first + 1000, |id| vec![syn(id, b"")]))
                .await;
            within_limits(&mux.stats());
        }
        let mut reader = refusals.await;
        sampler.finish().await;

        // The last refusal came back, so every SYN has been handled.
        let stats = mux.stats();
        assert_eq!(
            (stats.open_streams, stats.pending_accept),
            (MAX_STREAMS as usize, MAX_STREAMS as usize)
        );
        assert!(mux.is_alive());
        assert!(!driver.is_finished());
        assert_rss_growth(rss_before, 64 << 10, "SYN flood");

        // The first 64 are intact; once they are closed, the table takes new streams again.
        mock.send(&frames_for(1..MAX_STREAMS + 1, |id| vec![fin(id)]))
            .await;
        for id in 1..=MAX_STREAMS {
            let stream = mux.accept().await.unwrap();
            assert_eq!(stream.id(), id);
        }
        // Each stream's FIN, in order; a STOP_SENDING may come first where the handle went
        // before the mux had read the mock's FIN.
        let mut fins = 1..=MAX_STREAMS;
        while let Some(id) = fins.next() {
            let frame = reader.next_stream_frame().await;
            if frame.command == Command::Nop {
                assert_eq!(&frame.body[..], &[1], "{frame:?}");
                assert!(
                    frame.stream_id >= id,
                    "STOP_SENDING after its FIN: {frame:?}"
                );
                fins = id..=MAX_STREAMS;
                continue;
            }
            assert_eq!((frame.command, frame.stream_id), (Command::Fin, id));
            assert!(frame.body.is_empty(), "{frame:?}");
        }
        eventually("the table emptied", || mux.stats().open_streams == 0).await;
        mock.send(&concat(&[syn(SYNS + 1, b"after"), psh(SYNS + 1, b"ok")]))
            .await;
        let mut stream = mux.accept().await.unwrap();
        assert_eq!(stream.id(), SYNS + 1);
        let mut buf = [0u8; 2];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ok");
        assert!(mux.is_alive());
    });
}

// ----- 4. maximal metadata on every SYN -----

#[test]
fn max_size_metadata_on_every_syn_is_bounded_by_the_accept_backlog() {
    // 2,000 SYNs with 65,535 bytes of metadata each: 128 MiB on the wire, which is what the
    // process would hold if nothing bounded it. The backlog holds 32 (2 MiB).
    const BACKLOG: u32 = 32;
    const SYNS: u32 = 2_000;
    const META: usize = 65_535;
    // Slack for what the rest of the process (parallel tests, allocator) does meanwhile.
    const SLACK_KIB: u64 = 48 << 10;
    let config = quiet(Config::default().accept_backlog(BACKLOG as usize));
    let template = pattern(4, META);
    let metadata = move |id: u32| {
        let mut meta = template.clone();
        meta[..4].copy_from_slice(&id.to_le_bytes());
        meta
    };
    run(async move {
        let (mux, driver, mut mock) = mock_pair(config).await;
        handshake(&mut mock).await;
        let rss_before = rss_kib();

        let reader = FrameReader::new(&mock);
        let refusals = expect_refusals(reader, BACKLOG + 1..=SYNS, REFUSED_BACKLOG);
        let within_limits = |stats: &Stats| {
            assert!(stats.pending_accept <= BACKLOG as usize, "{stats:?}");
            assert!(stats.open_streams <= BACKLOG as usize, "{stats:?}");
        };
        let sampler = Sampler::spawn(&mux, within_limits);
        // In writes of 16 frames (1 MiB).
        for first in (1..=SYNS).step_by(16) {
            let ids = first..(first + 16).min(SYNS + 1);
            mock.send(&frames_for(ids, |id| vec![syn(id, &metadata(id))]))
                .await;
            within_limits(&mux.stats());
        }
        refusals.await;
        sampler.finish().await;

        // Every SYN has been handled: the backlog is full and holds the first 32.
        let stats = mux.stats();
        assert_eq!(stats.pending_accept, BACKLOG as usize);
        assert_eq!(stats.open_streams, BACKLOG as usize);
        assert_eq!(stats.recv_buffered_bytes, 0);
        assert!(mux.is_alive());
        assert!(!driver.is_finished());
        if let (Some(before), Some(after)) = (rss_before, rss_kib()) {
            eprintln!("metadata flood: RSS {before} -> {after} KiB");
        }
        assert_rss_growth(
            rss_before,
            BACKLOG as u64 * 64 + SLACK_KIB,
            "64 KiB metadata flood",
        );

        for id in 1..=BACKLOG {
            let stream = mux.accept().await.unwrap();
            assert_eq!(stream.id(), id);
            assert!(stream.metadata() == metadata(id), "metadata of stream {id}");
        }
        assert_eq!(mux.stats().pending_accept, 0);
        assert!(mux.is_alive());
    });
}

// ----- 5. one-byte dribble -----

#[test]
fn one_byte_psh_dribble_on_many_streams_is_read_correctly() {
    // 200 streams × 100 bytes, each byte its own PSH: 20,000 frames. The windows stay at 10
    // frames (the smallest stream_receive_buffer), so each stream needs 90 credits from MOREs.
    const STREAMS: u32 = 200;
    const BYTES: usize = 100;
    const WINDOW: usize = 10;
    let config = quiet(Config::default().stream_receive_buffer(Config::MIN_STREAM_RECEIVE_BUFFER));
    run(async move {
        let (mux, driver, mut mock) = mock_pair(config).await;
        handshake(&mut mock).await;
        mock.send(&frames_for(1..STREAMS + 1, |id| {
            vec![syn(id, &id.to_le_bytes())]
        }))
        .await;

        // The application reads every stream to EOF in its own task.
        let app = spawn({
            let mux = mux.clone();
            async move {
                let mut readers = Vec::new();
                for _ in 0..STREAMS {
                    let mut stream = mux.accept().await.unwrap();
                    readers.push(spawn(async move {
                        let mut got = Vec::new();
                        stream.read_to_end(&mut got).await.unwrap();
                        (stream.id(), got)
                    }));
                }
                for reader in readers {
                    let (id, got) = reader.await;
                    assert!(got == pattern(id as u64, BYTES), "bytes of stream {id}");
                }
            }
        });

        // The mock's reader passes the MOREs on; then it sees one FIN per stream, sent when the
        // application drops it after EOF.
        let (grants_tx, grants) = async_channel::unbounded::<(u32, u32)>();
        let mut reader = FrameReader::new(&mock);
        let mock_reader = spawn(async move {
            let mut fins = 0;
            while fins < STREAMS {
                let frame = reader.next_non_liveness().await;
                match frame.command {
                    Command::More => {
                        let credits = u16::from_le_bytes([frame.body[0], frame.body[1]]);
                        let _ = grants_tx.try_send((frame.stream_id, credits.into()));
                    }
                    Command::Fin => fins += 1,
                    _ => panic!("unexpected frame from the mux: {frame:?}"),
                }
            }
        });
        let sampler = Sampler::spawn(&mux, |stats| {
            // 1-byte frames within windows of 10 frames.
            assert!(
                stats.recv_buffered_bytes <= STREAMS as usize * WINDOW,
                "{stats:?}"
            );
        });

        // The mock sends one byte per stream in turn while it has credits, then waits for MOREs.
        let data: Vec<Vec<u8>> = (1..=STREAMS).map(|id| pattern(id as u64, BYTES)).collect();
        let mut credits = vec![WINDOW as u32; STREAMS as usize];
        let mut sent = vec![0usize; STREAMS as usize];
        let mut granted = 0u64;
        loop {
            let mut batch = Vec::new();
            loop {
                let mut any = false;
                for i in 0..STREAMS as usize {
                    if credits[i] > 0 && sent[i] < BYTES {
                        batch.extend_from_slice(&psh(i as u32 + 1, &data[i][sent[i]..][..1]));
                        credits[i] -= 1;
                        sent[i] += 1;
                        any = true;
                    }
                }
                if !any {
                    break;
                }
            }
            if !batch.is_empty() {
                mock.send(&batch).await;
            }
            if sent.iter().all(|&n| n == BYTES) {
                break;
            }
            let first = within(FRAME_TIMEOUT, grants.recv()).await;
            let mut grant = Some(first.expect("no MORE from the mux").unwrap());
            while let Some((id, n)) = grant {
                assert!((1..=STREAMS).contains(&id), "MORE for unknown stream {id}");
                credits[id as usize - 1] += n;
                granted += n as u64;
                grant = grants.try_recv().ok();
            }
        }
        mock.send(&frames_for(1..STREAMS + 1, |id| vec![fin(id)]))
            .await;
        app.await;
        mock_reader.await;
        let (max, _) = sampler.finish().await;
        assert!(
            granted >= (STREAMS as usize * (BYTES - WINDOW)) as u64,
            "the mock sent past the initial credits only with {granted} granted"
        );
        eprintln!("dribble: {granted} credits granted; max {max:?}");

        eventually("every stream left the table", || {
            mux.stats().open_streams == 0
        })
        .await;
        let stats = mux.stats();
        assert_eq!(
            (stats.recv_buffered_bytes, stats.send_buffered_bytes),
            (0, 0)
        );
        assert!(mux.is_alive());
        assert!(!driver.is_finished());
    });
}

// ----- 6. empty PSH, FIN for unknown ids, NOP -----

#[test]
fn empty_psh_unknown_fin_and_nop_floods_cost_nothing() {
    // 202,000 frames in all: 80,000 NOPs, 60,000 FINs for unknown ids (half of them aborts),
    // 60,000 empty PSHs for unknown ids, and 2,000 empty PSHs on an open stream (which cost
    // credits, so the mock waits for the MOREs that give them back).
    const NOPS: u32 = 80_000;
    const FINS: u32 = 60_000;
    const PSHS: u32 = 60_000;
    const KNOWN_PSHS: u32 = 2_000;
    run(async {
        let (mux, driver, mut mock) = mock_pair(quiet(Config::default())).await;
        handshake(&mut mock).await;
        mock.send(&syn(1, b"known")).await;
        let mut known = mux.accept().await.unwrap();
        let read = spawn(async move {
            let mut buf = [0u8; 4];
            known.read_exact(&mut buf).await.unwrap();
            (known, buf)
        });
        let rss_before = rss_kib();
        let zero = |stats: &Stats| {
            assert_eq!(stats.open_streams, 1, "{stats:?}");
            assert_eq!(stats.pending_accept, 0, "{stats:?}");
            assert_eq!(stats.recv_buffered_bytes, 0, "{stats:?}");
            assert_eq!(stats.send_buffered_bytes, 0, "{stats:?}");
        };
        let sampler = Sampler::spawn(&mux, zero);

        let nop_junk = |id: u32| raw_frame(GOOD_VERSION, Command::Nop.to_byte(), id, b"junk");
        let floods = [
            frames_for(0..NOPS, |i| {
                vec![if i % 2 == 0 { nop(i) } else { nop_junk(i) }]
            }),
            frames_for(1_000_000..1_000_000 + FINS, |id| {
                vec![if id % 2 == 0 {
                    fin(id)
                } else {
                    abort(id, "who?")
                }]
            }),
            frames_for(2_000_000..2_000_000 + PSHS, |id| vec![psh(id, b"")]),
        ];
        for flood in &floods {
            for piece in flood.chunks(64 << 10) {
                mock.send(piece).await;
            }
        }
        assert!(
            sync(&mut mock).await.is_empty(),
            "nothing is answered for unknown ids"
        );
        zero(&mux.stats());

        // Empty PSHs on the open stream: each costs a credit and is credited back as if read.
        let (mut credits, mut sent, mut granted) = (10u32, 0u32, 0u32);
        while sent < KNOWN_PSHS {
            let n = credits.min(KNOWN_PSHS - sent);
            mock.send(&psh(1, b"").repeat(n as usize)).await;
            (credits, sent) = (credits - n, sent + n);
            while credits == 0 && sent < KNOWN_PSHS {
                let frame = mock.expect(Command::More, 1).await;
                let n = u16::from_le_bytes([frame.body[0], frame.body[1]]) as u32;
                credits += n;
                granted += n;
            }
        }
        sync(&mut mock).await;
        zero(&mux.stats());
        assert!(granted >= KNOWN_PSHS - 10, "{granted} credits given back");
        assert!(!read.is_finished(), "empty PSHs carry no bytes to read");
        sampler.finish().await;
        assert!(mux.is_alive());
        assert!(!driver.is_finished());
        // Nothing is kept per frame (loose: see the module doc).
        assert_rss_growth(rss_before, 64 << 10, "empty frame floods");

        // Normal use still works: the pending read gets real bytes, and a new stream flows both
        // ways.
        mock.send(&psh(1, b"real")).await;
        let (_known, buf) = read.await;
        assert_eq!(&buf, b"real");
        mock.send(&concat(&[syn(2, b"after"), psh(2, b"hello"), fin(2)]))
            .await;
        let mut stream = mux.accept().await.unwrap();
        assert_eq!((stream.id(), stream.metadata()), (2, &b"after"[..]));
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        stream.write_all(b"world").await.unwrap();
        stream.close().await.unwrap();
        let mut reply = Vec::new();
        loop {
            let frame = mock.next_non_liveness().await;
            match (frame.command, frame.stream_id) {
                (Command::More, _) => {} // credits given back for what was read
                (Command::Psh, 2) => reply.extend_from_slice(&frame.body),
                (Command::Fin, 2) => break,
                _ => panic!("unexpected frame from the mux: {frame:?}"),
            }
        }
        assert_eq!(reply, b"world");
        assert!(mux.is_alive());
    });
}

// ----- 7. a peer that never reads -----

#[test]
fn a_peer_that_never_reads_blocks_the_writers_then_times_out() {
    // 16 streams with 64 KiB send buffers and every credit they could want; the mock never reads
    // a byte, not even the mux's first PING, so the session times out PING_TIMEOUT after it
    // starts. Filling the loopback socket's buffers (a few MiB) takes far less.
    const STREAMS: u32 = 16;
    const SEND_BUFFER: usize = 64 << 10;
    const PING_TIMEOUT: Duration = Duration::from_secs(3);
    let config = Config::default()
        .stream_send_buffer(SEND_BUFFER)
        .ping_interval(Some(Duration::from_millis(500)))
        .ping_timeout(PING_TIMEOUT);
    run(async move {
        let (mux, driver, mut mock) = mock_pair(config).await;
        mock.send(&frames_for(1..STREAMS + 1, |id| {
            vec![syn(id, b""), more(id, u16::MAX)]
        }))
        .await;
        let within_limits = |stats: &Stats| {
            assert!(
                stats.send_buffered_bytes <= STREAMS as usize * SEND_BUFFER,
                "{stats:?}"
            );
        };
        let sampler = Sampler::spawn(&mux, within_limits);

        // All streams but the last write as fast as they can, counting what `write` took.
        let progress = Arc::new(AtomicU64::new(0));
        let mut writers = Vec::new();
        for _ in 1..STREAMS {
            let mut stream = mux.accept().await.unwrap();
            let progress = progress.clone();
            writers.push(spawn(async move {
                let chunk = pattern(stream.id() as u64, 16 << 10);
                loop {
                    match stream.write(&chunk).await {
                        Ok(n) => progress.fetch_add(n as u64, Ordering::Relaxed),
                        Err(err) => return err,
                    };
                }
            }));
        }
        let mut last = mux.accept().await.unwrap();

        // The socket fills, the driver's writer blocks on it, the send buffers fill and the
        // writers wait. Checked as: all buffers full, and no progress across a pause.
        let full = (STREAMS as usize - 1) * SEND_BUFFER;
        loop {
            eventually("the writers' send buffers fill", || {
                assert!(
                    mux.is_alive(),
                    "the session ended before the writers blocked"
                );
                mux.stats().send_buffered_bytes == full
            })
            .await;
            let before = progress.load(Ordering::Relaxed);
            sleep(Duration::from_millis(100)).await;
            if progress.load(Ordering::Relaxed) == before && mux.stats().send_buffered_bytes == full
            {
                break;
            }
        }
        assert!(writers.iter().all(|w| !w.is_finished()));

        // The last stream takes one buffer's worth, and then its write waits too.
        last.write_all(&vec![7u8; SEND_BUFFER]).await.unwrap();
        assert_eq!(
            mux.stats().send_buffered_bytes,
            STREAMS as usize * SEND_BUFFER
        );
        let mut write = Box::pin(last.write(b"one more byte"));
        assert_pending(&mut write, "write on a full send buffer").await;
        assert!(
            mux.is_alive(),
            "the session ended before the writers blocked"
        );

        // Liveness ends the session, and every pending write fails at once.
        assert_err(driver.await, ErrorKind::TimedOut, "ping timeout");
        let prompt = Duration::from_secs(5); // a hang guard: they are woken when it ends
        let err = within(prompt, write)
            .await
            .expect("pending write still pending");
        assert_err(err, ErrorKind::TimedOut, "ping timeout");
        for writer in writers {
            let err = within(prompt, writer)
                .await
                .expect("pending write still pending");
            assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
        }
        let (max, _) = sampler.finish().await;
        assert!(!mux.is_alive());
        eprintln!(
            "never-reading peer: {} bytes taken by write; max {max:?}",
            progress.load(Ordering::Relaxed)
        );
        drop(mock);
    });
}

// ----- 8. a peer that never grants credits -----

#[test]
fn a_stream_without_credits_sends_ten_frames_and_others_keep_flowing() {
    const FRAME: usize = 4096;
    const SEND_BUFFER: usize = 64 << 10;
    const STARVED: usize = 256 << 10;
    const FLOWING: usize = 1 << 20;
    let config = quiet(
        Config::default()
            .max_frame_body(FRAME)
            .stream_send_buffer(SEND_BUFFER),
    );
    run(async move {
        let (mux, driver, mut mock) = mock_pair(config).await;
        handshake(&mut mock).await;
        let mut starved = mux.open(b"starved").await.unwrap();
        let mut flowing = mux.open(b"flowing").await.unwrap();
        let (a, b) = (starved.id(), flowing.id());
        mock.expect(Command::Syn, a).await;
        mock.expect(Command::Syn, b).await;

        let a_data = pattern(a as u64, STARVED);
        let b_data = pattern(b as u64, FLOWING);
        let starved_writer = spawn({
            let data = a_data.clone();
            async move {
                starved.write_all(&data).await?;
                starved.close().await?;
                io::Result::Ok(starved)
            }
        });
        let flowing_writer = spawn({
            let data = b_data.clone();
            async move {
                flowing.write_all(&data).await?;
                flowing.close().await
            }
        });

        // The mock grants `b` a credit for each frame it receives and `a` nothing.
        let (mut a_frames, mut a_got, mut b_got) = (0, Vec::new(), Vec::new());
        loop {
            let frame = mock.next_non_liveness().await;
            match (frame.command, frame.stream_id) {
                (Command::Psh, id) if id == a => {
                    a_frames += 1;
                    a_got.extend_from_slice(&frame.body);
                }
                (Command::Psh, id) if id == b => {
                    b_got.extend_from_slice(&frame.body);
                    mock.send(&more(b, 1)).await;
                }
                (Command::Fin, id) if id == b => break,
                _ => panic!("unexpected frame from the mux: {frame:?}"),
            }
        }
        assert!(b_got == b_data, "stream b delivered other bytes");
        flowing_writer.await.unwrap();
        assert_eq!(a_frames, 10, "stream a sent its 10 initial credits' worth");
        assert!(a_got[..] == a_data[..a_got.len()]);

        // `a` is stuck: its buffer is full, its writer waits, and nothing more comes.
        eventually("a's send buffer fills", || {
            mux.stats().send_buffered_bytes == SEND_BUFFER
        })
        .await;
        assert!(!starved_writer.is_finished(), "a's write should be pending");
        // For 300 ms nothing comes but credits and STOP_SENDING (for `b`, whose handle is
        // gone).
        loop {
            match mock.try_next_frame(Duration::from_millis(300)).await {
                Err(err) if err.kind() == ErrorKind::TimedOut => break,
                Ok(Some(frame)) if frame.command == Command::More => {}
                Ok(Some(frame)) if frame.command == Command::Nop && frame.stream_id == b => {}
                other => panic!("a sent without credits: {other:?}"),
            }
        }
        assert!(mux.is_alive());

        // Credits unblock it.
        mock.send(&more(a, u16::MAX)).await;
        loop {
            let frame = mock.next_non_liveness().await;
            match (frame.command, frame.stream_id) {
                (Command::Psh, id) if id == a => a_got.extend_from_slice(&frame.body),
                (Command::Fin, id) if id == a => break,
                _ => panic!("unexpected frame from the mux: {frame:?}"),
            }
        }
        assert!(a_got == a_data, "stream a delivered other bytes");
        starved_writer.await.unwrap();
        assert!(mux.is_alive());
        assert!(!driver.is_finished());
    });
}

// ----- 9. truncation at every byte -----

/// A reader that hands out at most `step` bytes per read.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    step: usize,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = buf.len().min(self.step).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Poll::Ready(Ok(n))
    }
}

#[test]
fn truncation_at_every_byte_ends_cleanly_or_with_unexpected_eof() {
    // PING (announcing smolmux), SYN with metadata, PSH, MORE, NOP, FIN: 98 bytes. For every
    // prefix, a fresh mux reads it then EOF, once in one read and once a byte per read, over
    // in-memory halves (no socket): 2 × 99 sessions.
    let frames = [
        ping(1_800_000, true),
        syn(1, b"meta"),
        psh(1, b"hello"),
        more(1, 5),
        nop(1),
        fin(1),
    ];
    let mut ends = Vec::new();
    for frame in &frames {
        ends.push(ends.last().copied().unwrap_or(0) + frame.len());
    }
    let (syn_end, psh_end, total) = (ends[1], ends[2], ends[5]);
    let all = concat(&frames);
    assert_eq!(all.len(), total);
    run(async move {
        for k in 0..=total {
            for step in [usize::MAX, 1] {
                let prefix = all[..k].to_vec();
                let boundary = k == 0 || ends.contains(&k);
                let what = format!("prefix of {k} bytes, {step} per read");
                let (mux, driver) = if step == usize::MAX {
                    Mux::new(
                        Cursor::new(prefix),
                        futures_lite::io::sink(),
                        Config::default(),
                    )
                } else {
                    let read = Trickle {
                        data: prefix,
                        pos: 0,
                        step,
                    };
                    Mux::new(read, futures_lite::io::sink(), Config::default())
                };
                let mut accept = Box::pin(mux.accept());
                assert_pending(&mut accept, "accept").await;

                // The driver resolves (under the hang guard), then the pending accept returns.
                let result = driver.await;
                let accepted = accept.await;
                assert!(!mux.is_alive(), "{what}");
                if !boundary {
                    assert_err(result, ErrorKind::UnexpectedEof, "middle of a frame");
                    // After a failure, even a stream already queued is not handed out.
                    assert_err(accepted, ErrorKind::UnexpectedEof, "middle of a frame");
                    continue;
                }
                assert!(result.is_ok(), "{what}: {result:?}");
                if k < syn_end {
                    assert_err(accepted, ErrorKind::ConnectionAborted, "closed by peer");
                    continue;
                }
                let mut stream = accepted.unwrap_or_else(|err| panic!("{what}: {err}"));
                assert_eq!((stream.id(), stream.metadata()), (1, &b"meta"[..]));
                let (mut got, mut buf) = (Vec::new(), [0u8; 16]);
                let end = loop {
                    match stream.read(&mut buf).await {
                        Ok(0) => break Ok(()),
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(err) => break Err(err),
                    }
                };
                let expected: &[u8] = if k >= psh_end { b"hello" } else { b"" };
                assert_eq!(got, expected, "{what}");
                if k == total {
                    end.unwrap_or_else(|err| panic!("{what}: FIN received, yet {err}"));
                } else {
                    assert_err(end, ErrorKind::ConnectionAborted, "closed by peer");
                }
                assert_err(mux.accept().await, ErrorKind::ConnectionAborted, "closed");
            }
        }
    });
}
