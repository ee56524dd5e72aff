//! async_smux 0.4 (smux v1) behind a handle like the other implementations'.
//!
//! async_smux is written against tokio's I/O traits but needs no tokio runtime when its
//! keep-alive and idle timers are off (their default): its worker is an ordinary future. So it
//! runs on the benchmark's shared smol executor like everything else, over the same smol
//! sockets, with tokio-util's compat layer in both directions: the socket into tokio's traits,
//! each stream back into futures-io's.

use std::io;

use async_smux::error::MuxError;
use async_smux::{MuxAcceptor, MuxBuilder, MuxConnector, MuxStream};
use smol::lock::Mutex;
use smol::net::TcpStream;
use smol::Task;
use smolmux::Role;
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use crate::runtime::spawn;

/// The connection as async_smux sees it: a smol socket with tokio's I/O traits.
type Conn = Compat<TcpStream>;

/// One end of an async_smux session. Both ends hold a connector and an acceptor: the session
/// ends once every handle (these two and the streams) is gone.
pub(crate) struct AsyncSmuxHandle {
    connector: MuxConnector<Conn>,
    /// `accept` takes `&mut`; the benchmark's endpoints are shared.
    acceptor: Mutex<MuxAcceptor<Conn>>,
}

impl AsyncSmuxHandle {
    /// Starts a session on `tcp` in `role` (the client's stream ids are odd, the server's even).
    pub(crate) fn start(tcp: TcpStream, role: Role) -> (AsyncSmuxHandle, Task<io::Result<()>>) {
        let mut builder = match role {
            Role::Client => MuxBuilder::client(),
            Role::Server => MuxBuilder::server(),
        };
        let (connector, acceptor, worker) = builder.with_connection(tcp.compat()).build();
        let driver = spawn(async move {
            match worker.await {
                // How the worker reports the peer's end of the connection, the way every
                // teardown ends the server's session.
                Ok(()) | Err(MuxError::ConnectionClosed) => Ok(()),
                Err(e) => Err(io::Error::other(format!("async_smux: {e}"))),
            }
        });
        let handle = AsyncSmuxHandle {
            connector,
            acceptor: Mutex::new(acceptor),
        };
        (handle, driver)
    }

    /// Opens a stream (a SYN queued; there is no reply to wait for in smux).
    pub(crate) fn open(&self) -> io::Result<Compat<MuxStream<Conn>>> {
        self.connector
            .connect()
            .map(TokioAsyncReadCompatExt::compat)
            .map_err(|e| io::Error::other(format!("async_smux: open: {e}")))
    }

    /// The next stream the peer opened.
    pub(crate) async fn accept(&self) -> io::Result<Compat<MuxStream<Conn>>> {
        self.acceptor
            .lock()
            .await
            .accept()
            .await
            .map(TokioAsyncReadCompatExt::compat)
            .ok_or_else(|| io::Error::other("async_smux: the session ended"))
    }
}
