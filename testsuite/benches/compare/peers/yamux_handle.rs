//! yamux 0.13 behind a handle like the other implementations'.

use std::io;
use std::task::Poll;

use async_channel::{Receiver, Sender};
use futures_lite::{future, StreamExt};
use smol::net::TcpStream;
use smol::Task;

use crate::runtime::spawn;

/// yamux 0.13's defaults: a 1 GiB connection receive window, 512 streams.
const DEFAULT_CONNECTION_WINDOW: usize = 1 << 30;
const DEFAULT_MAX_STREAMS: usize = 512;
/// Streams the benchmark lets a yamux connection hold.
const MAX_STREAMS: usize = 4096;

pub(crate) fn yamux_config() -> yamux::Config {
    let mut cfg = yamux::Config::default();
    // Default is 512 streams; scenario 6 holds 1,000 (+ headroom). yamux guarantees every
    // stream 256 KiB out of the connection receive window and lets windows grow only into what
    // is left: 4,096 streams would take the whole default 1 GiB and pin every window at
    // 256 KiB (1.7 MB/s at 150 ms). The window grows by what the extra streams reserve, so a
    // stream may grow exactly as far as with the defaults.
    cfg.set_max_connection_receive_window(Some(
        DEFAULT_CONNECTION_WINDOW
            + (MAX_STREAMS - DEFAULT_MAX_STREAMS) * yamux::DEFAULT_CREDIT as usize,
    ));
    cfg.set_max_num_streams(MAX_STREAMS);
    cfg
}

/// yamux 0.13 has no handle: a task owns the `Connection`, polls it continuously, serves open
/// requests from a channel and forwards inbound streams to another.
#[derive(Clone)]
pub(crate) struct YamuxHandle {
    pub(crate) open_tx: Sender<Sender<io::Result<yamux::Stream>>>,
    pub(crate) inbound_rx: Receiver<yamux::Stream>,
}

impl YamuxHandle {
    pub(crate) fn start(tcp: TcpStream, mode: yamux::Mode) -> (YamuxHandle, Task<io::Result<()>>) {
        let (open_tx, open_rx) = async_channel::unbounded();
        let (inbound_tx, inbound_rx) = async_channel::unbounded();
        let conn = yamux::Connection::new(tcp, yamux_config(), mode);
        let task = spawn(yamux_driver(conn, open_rx, inbound_tx));
        (
            YamuxHandle {
                open_tx,
                inbound_rx,
            },
            task,
        )
    }
    pub(crate) async fn open(&self) -> io::Result<yamux::Stream> {
        let (tx, rx) = async_channel::bounded(1);
        self.open_tx
            .send(tx)
            .await
            .map_err(|_| io::Error::other("yamux driver gone"))?;
        rx.recv()
            .await
            .map_err(|_| io::Error::other("yamux driver gone"))?
    }
    pub(crate) async fn accept(&self) -> io::Result<yamux::Stream> {
        self.inbound_rx
            .recv()
            .await
            .map_err(|_| io::Error::other("yamux connection ended"))
    }
}

pub(crate) fn yamux_err(e: yamux::ConnectionError) -> io::Error {
    io::Error::other(format!("yamux: {e}"))
}

pub(crate) async fn yamux_driver(
    mut conn: yamux::Connection<TcpStream>,
    open_rx: Receiver<Sender<io::Result<yamux::Stream>>>,
    inbound_tx: Sender<yamux::Stream>,
) -> io::Result<()> {
    let mut open_rx = Box::pin(open_rx);
    let mut pending: Option<Sender<io::Result<yamux::Stream>>> = None;
    let mut open_closed = false;
    let ended = future::poll_fn(|cx| loop {
        if pending.is_none() && !open_closed {
            match open_rx.poll_next(cx) {
                Poll::Ready(Some(req)) => pending = Some(req),
                Poll::Ready(None) => open_closed = true,
                Poll::Pending => {}
            }
        }
        if let Some(req) = &pending {
            if let Poll::Ready(res) = conn.poll_new_outbound(cx) {
                let _ = req.try_send(res.map_err(yamux_err));
                pending = None;
                continue;
            }
        }
        match conn.poll_next_inbound(cx) {
            Poll::Ready(Some(Ok(s))) => {
                let _ = inbound_tx.try_send(s);
                continue;
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(yamux_err(e)))),
            Poll::Ready(None) => return Poll::Ready(Some(Ok(()))),
            Poll::Pending => {}
        }
        if open_closed && pending.is_none() {
            // Every handle is gone (a handle holds the open sender and the inbound receiver
            // together): close the connection.
            return Poll::Ready(None);
        }
        return Poll::Pending;
    })
    .await;
    match ended {
        Some(result) => result,
        None => future::poll_fn(|cx| conn.poll_close(cx))
            .await
            .map_err(yamux_err),
    }
}
