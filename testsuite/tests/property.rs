//! Property test: two connected muxes, many streams, random writes, reads, half-closes, drops
//! and aborts, over an in-memory pipe that moves bytes in random chunk sizes and stalls at
//! random. Every stream must deliver exactly the bytes written, in order, with EOF where the
//! writer closed or dropped the stream, and a reset error only where it aborted.

#[allow(dead_code)] // each test crate uses part of the pipe
mod pipe;

use std::io::ErrorKind;
use std::time::Duration;

use futures_lite::future::{self, FutureExt as _};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use pipe::Faults;
use proptest::prelude::*;
use smolmux::{Config, Mux, Stream};

/// How the opener ends its direction of a stream.
#[derive(Clone, Copy, Debug)]
enum Ending {
    Close,
    Drop,
    Abort,
}

#[derive(Clone, Debug)]
struct StreamPlan {
    metadata_len: usize,
    writes: Vec<usize>,
    read_chunk: usize,
    ending: Ending,
    reply_len: usize,
}

fn stream_plan() -> impl Strategy<Value = StreamPlan> {
    (
        0usize..200,
        prop::collection::vec(prop_oneof![1usize..100, 100usize..70_000], 0..8),
        1usize..20_000,
        prop_oneof![
            Just(Ending::Close),
            Just(Ending::Close),
            Just(Ending::Drop),
            Just(Ending::Abort)
        ],
        0usize..50_000,
    )
        .prop_map(
            |(metadata_len, writes, read_chunk, ending, reply_len)| StreamPlan {
                metadata_len,
                writes,
                read_chunk,
                ending,
                reply_len,
            },
        )
}

/// Bytes of stream `index`, offset `at`: distinct per stream and position, so a mix-up shows.
fn pattern(index: usize, at: usize) -> u8 {
    (at as u64)
        .wrapping_mul(31)
        .wrapping_add(index as u64 * 7919) as u8
}

fn bytes(index: usize, len: usize) -> Vec<u8> {
    (0..len).map(|at| pattern(index, at)).collect()
}

async fn read_all(stream: &mut Stream, chunk: usize) -> (Vec<u8>, Option<ErrorKind>) {
    let mut got = Vec::new();
    let mut buf = vec![0; chunk];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) => return (got, Some(err.kind())),
        }
    }
}

/// The opener's side of one stream: writes, then ends as planned, then reads the reply.
async fn opener(mux: Mux, index: usize, plan: StreamPlan) {
    let mut metadata = (index as u32).to_le_bytes().to_vec();
    metadata.extend(bytes(index, plan.metadata_len));
    let mut stream = mux.open(&metadata).await.expect("open");
    let mut at = 0;
    for &len in &plan.writes {
        let data: Vec<u8> = (at..at + len).map(|i| pattern(index, i)).collect();
        stream.write_all(&data).await.expect("write");
        at += len;
    }
    match plan.ending {
        Ending::Close => {
            stream.close().await.expect("close");
            let (reply, err) = read_all(&mut stream, plan.read_chunk).await;
            assert_eq!(err, None, "stream {index}: reply ended with an error");
            assert!(
                reply == bytes(index + 1, plan.reply_len),
                "stream {index}: reply corrupted"
            );
        }
        Ending::Drop => drop(stream),
        Ending::Abort => stream.abort("test abort"),
    }
}

/// The stream index the opener put at the front of the metadata; the rest is its pattern.
fn index_of(stream: &Stream, plans: &[StreamPlan]) -> usize {
    let (head, rest) = stream.metadata().split_at(4);
    let index = u32::from_le_bytes(head.try_into().unwrap()) as usize;
    assert!(
        rest == bytes(index, plans[index].metadata_len),
        "stream {index}: metadata corrupted"
    );
    index
}

/// The acceptor's side: checks what arrives against the plan, then replies.
async fn acceptor(mut stream: Stream, index: usize, plan: StreamPlan) {
    let (got, err) = read_all(&mut stream, plan.read_chunk).await;
    let sent: usize = plan.writes.iter().sum();
    match plan.ending {
        Ending::Close | Ending::Drop => {
            assert_eq!(
                err, None,
                "stream {index}: {:?} must end with EOF",
                plan.ending
            );
            assert_eq!(got.len(), sent, "stream {index}: length");
            assert!(got == bytes(index, sent), "stream {index}: bytes corrupted");
        }
        Ending::Abort => {
            // Whatever arrived before the reset is an exact prefix; then the reset is reported.
            assert_eq!(err, Some(ErrorKind::ConnectionReset), "stream {index}");
            assert!(
                got.len() <= sent && got == bytes(index, got.len()),
                "stream {index}: prefix"
            );
        }
    }
    if matches!(plan.ending, Ending::Close) {
        stream
            .write_all(&bytes(index + 1, plan.reply_len))
            .await
            .expect("reply");
        stream.close().await.expect("close reply");
    }
}

fn run(plans: Vec<StreamPlan>, faults: Faults, seed: u64) {
    let (a_end, b_end) = pipe::duplex(64 << 10, faults, faults, seed);
    let config = Config::default()
        .ping_interval(None)
        .max_frame_body(1 + (seed as usize % 65_535));
    let (a_read, a_write) = futures_lite::io::split(a_end);
    let (b_read, b_write) = futures_lite::io::split(b_end);
    let (a, a_driver) = Mux::new(a_read, a_write, config.clone());
    let (b, b_driver) = Mux::new(b_read, b_write, config);

    let ex = smol::LocalExecutor::new();
    ex.spawn(async move { a_driver.await.expect("driver a") })
        .detach();
    ex.spawn(async move { b_driver.await.expect("driver b") })
        .detach();
    let test = async {
        let openers: Vec<_> = plans
            .iter()
            .cloned()
            .enumerate()
            .map(|(index, plan)| ex.spawn(opener(a.clone(), index, plan)))
            .collect();
        let openers_done = async {
            for opener in openers {
                opener.await;
            }
        };
        futures_lite::pin!(openers_done);
        // Streams must be accepted for as long as openers run: an opener that aborts does so
        // only after its writes, which wait for credits that only reading an accepted stream
        // grants. A stream aborted before it is accepted is dropped unseen (the rapid-reset
        // defence), so once the openers are done only the others are sure to arrive.
        let mut seen = vec![false; plans.len()];
        let must_see = |seen: &[bool]| {
            plans
                .iter()
                .zip(seen)
                .any(|(plan, &seen)| !seen && !matches!(plan.ending, Ending::Abort))
        };
        let mut acceptors = Vec::new();
        let mut all_openers_done = false;
        while !all_openers_done || must_see(&seen) {
            let accept = async { Some(b.accept().await.expect("accept")) };
            let next = if all_openers_done {
                accept.await
            } else {
                accept
                    .or(async {
                        openers_done.as_mut().await;
                        None
                    })
                    .await
            };
            let Some(stream) = next else {
                all_openers_done = true;
                continue;
            };
            let index = index_of(&stream, &plans);
            assert!(
                !std::mem::replace(&mut seen[index], true),
                "stream {index} accepted twice"
            );
            acceptors.push(ex.spawn(acceptor(stream, index, plans[index].clone())));
        }
        for acceptor in acceptors {
            acceptor.await;
        }
    };
    let guard = async {
        smol::Timer::after(Duration::from_secs(60)).await;
        panic!("property run hung");
    };
    future::block_on(ex.run(test.or(guard)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_stream_gets_exactly_its_bytes(
        plans in prop::collection::vec(stream_plan(), 1..24),
        max_chunk in 1usize..100_000,
        pending_percent in 0u8..40,
        seed in any::<u64>(),
    ) {
        let faults = Faults { max_chunk, pending_percent, cut_after: None };
        run(plans, faults, seed);
    }
}
