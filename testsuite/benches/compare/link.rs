//! An emulated WAN link: a userspace relay on 127.0.0.1 between a benchmark's two ends.
//!
//! Every connection made to the link's address is relayed to one upstream address. Each
//! direction of the link is one bottleneck shared by every connection through it, as a real
//! path's slowest hop is:
//!
//! ```text
//!  source socket ──read──▶ bottleneck queue ──rate R──▶ propagation (RTT/2) ──write──▶ destination
//!                          (≤ 1 × BDP, FIFO        (token bucket:            (per connection,
//!                           across connections)     one serializer clock)     in order)
//! ```
//!
//! - The queue holds at most one bandwidth × delay product. When it is full the relay stops
//!   reading (back-pressure into the sender's socket), instead of dropping: the ends' own TCP
//!   runs on loopback and would not see a drop the way it would on a real path.
//! - Readers take tickets, so bytes enter the queue in the order they arrived, whichever
//!   connection they belong to: a message on its own connection waits behind the queue, as it
//!   would behind a router's.
//! - The ends' TCP sockets see no delay (their peer is the relay); only what crosses the relay
//!   is delayed and paced. Flow control that travels in-band (a multiplexer's window updates,
//!   its PINGs) sees the whole round trip.
//!
//! The relay runs on its own OS threads (two per connection and direction: a reader that
//! paces, a writer that delays), with blocking sockets and sleeps: at 1 Gbit/s a 64 KiB read is
//! half a millisecond of link time, so a sleep's tens of microseconds of overshoot do not matter.

use std::collections::VecDeque;
use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::peers::Route;

/// The most one relay read takes from a socket: one multiplexer frame, one benchmark write.
const READ_CHUNK: usize = 64 << 10;

/// A path: its round-trip time and its bottleneck rate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct LinkParams {
    pub(crate) rtt: Duration,
    /// Bytes per second.
    pub(crate) rate: f64,
}

impl LinkParams {
    /// The bandwidth × delay product in bytes.
    pub(crate) fn bdp(&self) -> usize {
        (self.rate * self.rtt.as_secs_f64()) as usize
    }

    /// A label such as "50 ms / 200 Mbit/s".
    pub(crate) fn label(&self) -> String {
        let mbit = self.rate * 8.0 / 1e6;
        let rate = if mbit >= 1000.0 {
            format!("{} Gbit/s", mbit / 1000.0)
        } else {
            format!("{mbit} Mbit/s")
        };
        format!("{} ms / {rate}", self.rtt.as_millis())
    }

    fn one_way(&self) -> Duration {
        self.rtt / 2
    }

    fn transmit_time(&self, bytes: usize) -> Duration {
        Duration::from_secs_f64(bytes as f64 / self.rate)
    }
}

/// One direction's bottleneck: the time at which its serializer will have sent everything
/// queued so far, and the ticket counters that keep arrivals in order.
struct Bottleneck {
    params: LinkParams,
    state: Mutex<BottleneckState>,
    turn: Condvar,
}

struct BottleneckState {
    /// When the bytes accepted so far will have left the bottleneck.
    free_at: Instant,
    next_ticket: u64,
    serving: u64,
}

impl Bottleneck {
    fn new(params: LinkParams) -> Bottleneck {
        Bottleneck {
            params,
            state: Mutex::new(BottleneckState {
                free_at: Instant::now(),
                next_ticket: 0,
                serving: 0,
            }),
            turn: Condvar::new(),
        }
    }

    /// Queues `len` bytes once there is room for them (the queue's limit is one BDP; a
    /// chunk larger than that enters an empty queue) and returns when they arrive at the far
    /// end: after the bytes ahead of them and they themselves have been sent at the rate,
    /// plus the one-way delay.
    fn enqueue(&self, len: usize) -> Instant {
        let cap = self.params.bdp().max(len);
        let mut st = self.state.lock().unwrap();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        while st.serving != ticket {
            st = self.turn.wait(st).unwrap();
        }
        loop {
            let now = Instant::now();
            let queued = st.free_at.saturating_duration_since(now).as_secs_f64() * self.params.rate;
            let excess = queued + len as f64 - cap as f64;
            if excess <= 0.0 {
                break;
            }
            // Only the ticket holder waits here, so releasing the lock lets later arrivals
            // take their tickets meanwhile.
            drop(st);
            thread::sleep(Duration::from_secs_f64(excess / self.params.rate));
            st = self.state.lock().unwrap();
        }
        let start = st.free_at.max(Instant::now());
        st.free_at = start + self.params.transmit_time(len);
        let arrival = st.free_at + self.params.one_way();
        st.serving += 1;
        self.turn.notify_all();
        arrival
    }
}

/// Bytes on their way to one connection's destination, in order; `None` is the source's EOF.
struct Propagation {
    state: Mutex<PropagationState>,
    changed: Condvar,
}

struct PropagationState {
    chunks: VecDeque<(Instant, Option<Vec<u8>>)>,
    bytes: usize,
    /// The destination failed: nothing more will be delivered.
    broken: bool,
}

/// The link: a listener whose connections are relayed to `upstream`. Dropping it stops
/// accepting; relays already running end with their connections.
pub(crate) struct Link {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Link {
    pub(crate) fn start(params: LinkParams, upstream: SocketAddr) -> io::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let forward = Arc::new(Bottleneck::new(params));
        let backward = Arc::new(Bottleneck::new(params));
        let accepting = stop.clone();
        thread::Builder::new()
            .name("link-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if accepting.load(Ordering::Relaxed) {
                        break;
                    }
                    let relayed = conn.and_then(|client| {
                        let server = TcpStream::connect(upstream)?;
                        for s in [&client, &server] {
                            s.set_nodelay(true)?;
                        }
                        relay(&client, &server, forward.clone())?;
                        relay(&server, &client, backward.clone())
                    });
                    if let Err(e) = relayed {
                        eprintln!("link: relaying a connection failed: {e}");
                    }
                }
            })?;
        Ok(Link { addr, stop })
    }

    /// Where the client end connects.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A route through a new link: the client connects to the link, which relays to a port
/// reserved here for the server (a fresh process binds it: see `child.rs`).
pub(crate) fn route_through(params: LinkParams) -> io::Result<(Link, Route)> {
    let listen = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let link = Link::start(params, listen)?;
    let via = Some(link.addr());
    Ok((link, Route { listen, via }))
}

/// Parses `BENCH_LINKS`-style lists: `RTT_MS:MBIT_PER_S` pairs separated by commas.
pub(crate) fn parse_links(list: &str) -> Result<Vec<LinkParams>, String> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let (rtt, mbit) = s
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("{s:?} is not RTT_MS:MBIT_PER_S"))?;
            let rtt: f64 = rtt
                .parse()
                .map_err(|_| format!("{rtt:?} is not a number of ms"))?;
            let mbit: f64 = mbit
                .parse()
                .map_err(|_| format!("{mbit:?} is not a number of Mbit/s"))?;
            if !(rtt >= 1.0 && mbit > 0.0) {
                return Err(format!(
                    "{s:?}: the RTT must be at least 1 ms and the rate positive"
                ));
            }
            Ok(LinkParams {
                rtt: Duration::from_secs_f64(rtt / 1e3),
                rate: mbit * 1e6 / 8.0,
            })
        })
        .collect()
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accepting thread, which sees the flag and ends.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Starts one direction of one connection: a reader that paces `from`'s bytes through the
/// bottleneck, and a writer that hands them to `to` when they arrive.
fn relay(from: &TcpStream, to: &TcpStream, bottleneck: Arc<Bottleneck>) -> io::Result<()> {
    let (mut from, mut to) = (from.try_clone()?, to.try_clone()?);
    let line = Arc::new(Propagation {
        state: Mutex::new(PropagationState {
            chunks: VecDeque::new(),
            bytes: 0,
            broken: false,
        }),
        changed: Condvar::new(),
    });
    // Bytes sent but not yet delivered, per connection: the queue plus the pipe (1.5 × BDP)
    // at most while the destination keeps up. Beyond that its reader stops, so a destination
    // that does not read holds up its own connection only, with bounded memory.
    let limit = bottleneck.params.bdp() * 2 + READ_CHUNK;
    let reader_line = line.clone();
    thread::Builder::new()
        .name("link-read".into())
        .spawn(move || {
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                // A read error ends the stream like an EOF: the writer passes it on.
                let n = from.read(&mut buf).unwrap_or(0);
                {
                    let mut st = reader_line.state.lock().unwrap();
                    while st.bytes >= limit && !st.broken {
                        st = reader_line.changed.wait(st).unwrap();
                    }
                    if st.broken {
                        // The destination is gone: stop the source too.
                        let _ = from.shutdown(Shutdown::Both);
                        return;
                    }
                }
                let arrival = bottleneck.enqueue(n.max(1));
                let mut st = reader_line.state.lock().unwrap();
                st.bytes += n;
                st.chunks
                    .push_back((arrival, (n > 0).then(|| buf[..n].to_vec())));
                reader_line.changed.notify_all();
                if n == 0 {
                    return;
                }
            }
        })?;
    thread::Builder::new()
        .name("link-write".into())
        .spawn(move || loop {
            let (arrival, chunk) = {
                let mut st = line.state.lock().unwrap();
                loop {
                    if let Some(front) = st.chunks.pop_front() {
                        break front;
                    }
                    st = line.changed.wait(st).unwrap();
                }
            };
            if let Some(wait) = arrival.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            let delivered = match &chunk {
                Some(bytes) => to.write_all(bytes),
                None => to.shutdown(Shutdown::Write),
            };
            let mut st = line.state.lock().unwrap();
            st.bytes -= chunk.as_ref().map_or(0, Vec::len);
            if delivered.is_err() {
                st.broken = true;
            }
            line.changed.notify_all();
            if delivered.is_err() || chunk.is_none() {
                if delivered.is_err() {
                    let _ = to.shutdown(Shutdown::Both);
                }
                return;
            }
        })?;
    Ok(())
}
