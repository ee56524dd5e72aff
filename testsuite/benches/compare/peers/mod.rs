//! A uniform view of the implementations: a session is a client/server pair of one
//! implementation, and its endpoints open and accept boxed byte streams.

mod async_smux_handle;
mod yamux_handle;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::future;
use futures_lite::{AsyncRead, AsyncWrite};
use serde::{Deserialize, Serialize};
use smol::net::{TcpListener, TcpStream};
use smol::Task;

use self::async_smux_handle::AsyncSmuxHandle;
use self::yamux_handle::YamuxHandle;
use crate::runtime::{spawn, with_timeout};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Impl {
    Raw,
    Smolmux,
    /// smolmux speaking Go smux v2 ([`smolmux::Protocol::SmuxV2`]).
    SmolmuxSmuxV2,
    /// smolmux speaking yamux ([`smolmux::Protocol::Yamux`]), next to rust-yamux.
    SmolmuxYamux,
    Yamux,
    Picomux,
    /// async_smux 0.4, which speaks smux v1.
    AsyncSmux,
}

pub(crate) const ALL_IMPLS: [Impl; 7] = [
    Impl::Raw,
    Impl::Smolmux,
    Impl::SmolmuxSmuxV2,
    Impl::SmolmuxYamux,
    Impl::Yamux,
    Impl::Picomux,
    Impl::AsyncSmux,
];

impl Impl {
    pub(crate) fn key(self) -> &'static str {
        match self {
            Impl::Raw => "raw",
            Impl::Smolmux => "smolmux",
            Impl::SmolmuxSmuxV2 => "smolmux_smux2",
            Impl::SmolmuxYamux => "smolmux_yamux",
            Impl::Yamux => "yamux",
            Impl::Picomux => "picomux",
            Impl::AsyncSmux => "async_smux",
        }
    }
    pub(crate) fn title(self) -> &'static str {
        match self {
            Impl::Raw => "raw TCP",
            Impl::Smolmux => "smolmux",
            Impl::SmolmuxSmuxV2 => "smolmux (smux v2)",
            Impl::SmolmuxYamux => "smolmux (yamux)",
            Impl::Yamux => "yamux 0.13",
            Impl::Picomux => "picomux 0.1.18",
            Impl::AsyncSmux => "async_smux 0.4",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<Impl> {
        match s.trim().to_ascii_lowercase().as_str() {
            "raw" | "tcp" | "rawtcp" | "raw_tcp" => Some(Impl::Raw),
            "smolmux" | "smol" => Some(Impl::Smolmux),
            "smolmux_smux2" | "smolmux-smux2" | "smux2" => Some(Impl::SmolmuxSmuxV2),
            "smolmux_yamux" | "smolmux-yamux" => Some(Impl::SmolmuxYamux),
            "yamux" => Some(Impl::Yamux),
            "picomux" | "pico" => Some(Impl::Picomux),
            "async_smux" | "async-smux" => Some(Impl::AsyncSmux),
            _ => None,
        }
    }
    /// picomux's stream failures are counted, not fatal (known truncation race).
    pub(crate) fn failures_tolerated(self) -> bool {
        self == Impl::Picomux
    }
}

pub(crate) fn smolmux_config() -> smolmux::Config {
    smolmux::Config::default()
}

/// smolmux in `protocol` (smux v2 or yamux): the defaults otherwise, `role` as both need one.
fn smolmux_dialect_config(protocol: smolmux::Protocol, role: smolmux::Role) -> smolmux::Config {
    smolmux_config().protocol(protocol).role(role)
}

pub(crate) trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}
pub(crate) type BStream = Box<dyn Duplex>;

pub(crate) enum Endpoint {
    RawConnect(SocketAddr),
    RawListen(TcpListener),
    Smol(smolmux::Mux),
    Yamux(YamuxHandle),
    Pico(picomux::PicoMux),
    AsyncSmux(AsyncSmuxHandle),
}

impl Endpoint {
    pub(crate) async fn open(&self) -> io::Result<BStream> {
        Ok(match self {
            Endpoint::RawConnect(addr) => {
                let tcp = TcpStream::connect(*addr).await?;
                tcp.set_nodelay(true)?;
                Box::new(tcp)
            }
            Endpoint::RawListen(_) => unreachable!("raw listener does not open"),
            Endpoint::Smol(m) => Box::new(m.open(b"").await?),
            Endpoint::Yamux(y) => Box::new(y.open().await?),
            Endpoint::Pico(p) => Box::new(p.open(b"").await?),
            Endpoint::AsyncSmux(a) => Box::new(a.open()?),
        })
    }
    pub(crate) async fn accept(&self) -> io::Result<BStream> {
        Ok(match self {
            Endpoint::RawListen(l) => {
                let (tcp, _) = l.accept().await?;
                tcp.set_nodelay(true)?;
                Box::new(tcp)
            }
            Endpoint::RawConnect(_) => unreachable!("raw connector does not accept"),
            Endpoint::Smol(m) => Box::new(m.accept().await?),
            Endpoint::Yamux(y) => Box::new(y.accept().await?),
            Endpoint::Pico(p) => Box::new(p.accept().await?),
            Endpoint::AsyncSmux(a) => Box::new(a.accept().await?),
        })
    }
}

/// One client/server pair of one implementation; both ends in this process. Raw TCP makes a
/// connection per stream, the multiplexers one connection for all.
pub(crate) struct Session {
    pub(crate) imp: Impl,
    pub(crate) client: Endpoint,
    pub(crate) server: Endpoint,
    pub(crate) drivers: Vec<(&'static str, Task<io::Result<()>>)>,
}

/// Where a session's ends meet: the server listens on `listen`; the client connects to `via`
/// (an emulated link relaying to `listen`) or, without one, to the listener itself.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct Route {
    pub(crate) listen: SocketAddr,
    pub(crate) via: Option<SocketAddr>,
}

impl Route {
    /// Straight over loopback, on a port the system picks.
    pub(crate) fn loopback() -> Route {
        Route {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            via: None,
        }
    }

    /// The listener and the address its clients connect to.
    async fn listen(self) -> io::Result<(TcpListener, SocketAddr)> {
        let listener = TcpListener::bind(self.listen).await?;
        let addr = listener.local_addr()?;
        Ok((listener, self.via.unwrap_or(addr)))
    }
}

/// One connection along `route`, with TCP_NODELAY at both ends.
async fn tcp_pair(route: Route) -> io::Result<(TcpStream, TcpStream)> {
    let (listener, addr) = route.listen().await?;
    let (c, a) = future::zip(TcpStream::connect(addr), listener.accept()).await;
    let (c, (a, _)) = (c?, a?);
    c.set_nodelay(true)?;
    a.set_nodelay(true)?;
    Ok((c, a))
}

impl Session {
    pub(crate) async fn new(imp: Impl, route: Route) -> io::Result<Session> {
        match imp {
            Impl::Raw => {
                let (listener, addr) = route.listen().await?;
                Ok(Session {
                    imp,
                    client: Endpoint::RawConnect(addr),
                    server: Endpoint::RawListen(listener),
                    drivers: vec![],
                })
            }
            Impl::Smolmux | Impl::SmolmuxSmuxV2 | Impl::SmolmuxYamux => {
                let protocol = match imp {
                    Impl::SmolmuxSmuxV2 => smolmux::Protocol::SmuxV2,
                    Impl::SmolmuxYamux => smolmux::Protocol::Yamux,
                    _ => smolmux::Protocol::Picomux,
                };
                let (client_config, server_config) = match protocol {
                    smolmux::Protocol::Picomux => (smolmux_config(), smolmux_config()),
                    _ => (
                        smolmux_dialect_config(protocol, smolmux::Role::Client),
                        smolmux_dialect_config(protocol, smolmux::Role::Server),
                    ),
                };
                let (c, a) = tcp_pair(route).await?;
                let (cm, cd) = smolmux::Mux::new(c.clone(), c, client_config);
                let (sm, sd) = smolmux::Mux::new(a.clone(), a, server_config);
                Ok(Session {
                    imp,
                    client: Endpoint::Smol(cm),
                    server: Endpoint::Smol(sm),
                    drivers: vec![("client driver", spawn(cd)), ("server driver", spawn(sd))],
                })
            }
            Impl::Yamux => {
                let (c, a) = tcp_pair(route).await?;
                let (ch, cd) = YamuxHandle::start(c, yamux::Mode::Client);
                let (sh, sd) = YamuxHandle::start(a, yamux::Mode::Server);
                Ok(Session {
                    imp,
                    client: Endpoint::Yamux(ch),
                    server: Endpoint::Yamux(sh),
                    drivers: vec![("client driver", cd), ("server driver", sd)],
                })
            }
            Impl::Picomux => {
                let (c, a) = tcp_pair(route).await?;
                Ok(Session {
                    imp,
                    client: Endpoint::Pico(picomux::PicoMux::new(c.clone(), c)),
                    server: Endpoint::Pico(picomux::PicoMux::new(a.clone(), a)),
                    drivers: vec![],
                })
            }
            Impl::AsyncSmux => {
                let (c, a) = tcp_pair(route).await?;
                let (ch, cd) = AsyncSmuxHandle::start(c, smolmux::Role::Client);
                let (sh, sd) = AsyncSmuxHandle::start(a, smolmux::Role::Server);
                Ok(Session {
                    imp,
                    client: Endpoint::AsyncSmux(ch),
                    server: Endpoint::AsyncSmux(sh),
                    drivers: vec![("client driver", cd), ("server driver", sd)],
                })
            }
        }
    }

    /// Diagnostic state for a hang report.
    pub(crate) fn debug_state(&self) -> String {
        match (&self.client, &self.server) {
            (Endpoint::Smol(c), Endpoint::Smol(s)) => format!(
                "client alive={} {:?}; server alive={} {:?}",
                c.is_alive(),
                c.stats(),
                s.is_alive(),
                s.stats()
            ),
            (Endpoint::Pico(c), Endpoint::Pico(s)) => {
                format!(
                    "client alive={}; server alive={}",
                    c.is_alive(),
                    s.is_alive()
                )
            }
            _ => String::new(),
        }
    }

    /// Ends the session gracefully, one side after the other, and checks that both drivers end
    /// cleanly: the client side shuts down first (smolmux: `Mux::close`; yamux and async_smux:
    /// the handles are dropped, so the driver closes the connection; picomux and raw TCP:
    /// dropped), then the
    /// server side, which sees the connection end.
    pub(crate) async fn teardown(self) -> Result<(), String> {
        let Session {
            imp,
            client,
            server,
            mut drivers,
        } = self;
        let key = imp.key();
        let wait = |name: &'static str, d: Task<io::Result<()>>| async move {
            match with_timeout(Duration::from_secs(10), d).await {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => Err(format!(
                    "{key}: {name} ended with an error during teardown: {e}"
                )),
                None => Err(format!(
                    "{key}: {name} did not end within 10 s of the teardown"
                )),
            }
        };
        let server_driver = if drivers.len() == 2 {
            Some(drivers.pop().unwrap())
        } else {
            None
        };
        let client_driver = drivers.pop();
        match imp {
            Impl::Smolmux | Impl::SmolmuxSmuxV2 | Impl::SmolmuxYamux => {
                if let Endpoint::Smol(c) = &client {
                    match with_timeout(Duration::from_secs(10), c.close()).await {
                        Some(Ok(())) => {}
                        Some(Err(e)) => {
                            return Err(format!("{key}: client Mux::close failed: {e}"))
                        }
                        None => {
                            return Err(format!(
                                "{key}: client Mux::close did not return within 10 s"
                            ))
                        }
                    }
                }
                drop(client);
                // The server's session ends when it reads the client's EOF.
                if let Some((name, d)) = server_driver {
                    wait(name, d).await?;
                }
                drop(server);
                if let Some((name, d)) = client_driver {
                    wait(name, d).await?;
                }
            }
            _ => {
                drop(client);
                if let Some((name, d)) = client_driver {
                    wait(name, d).await?;
                }
                if let Some((name, d)) = server_driver {
                    wait(name, d).await?;
                }
                drop(server);
            }
        }
        Ok(())
    }
}
