//! A TCP port forwarder: many TCP connections carried over one multiplexed connection, on smol.
//!
//! ```text
//! # from the repository's root (this example is in the workspace member testsuite/);
//! # the far end: accepts tunnel connections and connects to the targets the client names
//! cargo run --release -p smolmux-testsuite --example tunnel -- server --listen 127.0.0.1:7100
//! # the near end: listens locally, forwards each connection as one stream to TARGET
//! cargo run --release -p smolmux-testsuite --example tunnel -- client --server 127.0.0.1:7100 --local 127.0.0.1:7200 --target 127.0.0.1:8000
//!
//! # the same over TLS: the server makes a self-signed certificate at start-up and writes it
//! # (DER) to --cert; the client trusts exactly that certificate
//! cargo run --release -p smolmux-testsuite --example tunnel -- server --listen 127.0.0.1:7100 --tls --cert /tmp/tunnel.der
//! cargo run --release -p smolmux-testsuite --example tunnel -- client --server 127.0.0.1:7100 --local 127.0.0.1:7200 \
//!     --target 127.0.0.1:8000 --tls --cert /tmp/tunnel.der
//!
//! # over one WebSocket connection (through HTTP proxies that forward WebSocket upgrades);
//! # with --tls too, that is wss://
//! cargo run --release -p smolmux-testsuite --example tunnel -- server --listen 127.0.0.1:7100 --ws
//! cargo run --release -p smolmux-testsuite --example tunnel -- client --server localhost:7100 --local 127.0.0.1:7200 \
//!     --target 127.0.0.1:8000 --ws
//! ```
//!
//! Each stream's metadata is its target `HOST:PORT`; half-close goes through both ways, so a
//! client that shuts down its write side after its request still gets the whole response.
//!
//! This is an example, not a hardened proxy: the server connects to whatever target a client
//! names, so expose it only to clients you trust (the TLS mode authenticates the server, not the
//! client).

use std::io;
use std::process::exit;

use smol::net::TcpListener;

#[path = "tunnel/tunnel_lib.rs"]
mod tunnel_lib;

use tunnel_lib::{ClientOptions, ErrorContext, ServerOptions};

const USAGE: &str = "\
usage:
  tunnel server --listen ADDR [--tls --cert FILE [--key FILE]] [--ws]
  tunnel client --server ADDR --local ADDR --target HOST:PORT [--tls --cert FILE] [--ws]
  tunnel --help";

const HELP: &str = "
Carries many TCP connections over one multiplexed connection (smolmux, on smol).

modes:
  server              accepts tunnel connections; connects each stream to the target the
                      client names and copies bytes both ways
  client              listens on --local and forwards each connection it accepts there as
                      one stream of its tunnel connection, to --target

options:
  --listen ADDR       (server) where to accept tunnel connections
  --server ADDR       (client) the tunnel server to connect to
  --local ADDR        (client) where to accept the connections to forward
  --target HOST:PORT  (client) where the server connects each forwarded connection
  --tls               TLS around the tunnel connection; give it to both sides
  --cert FILE         (with --tls) the server's certificate, DER or PEM. The server without
                      --key makes a self-signed certificate and writes it (DER) to FILE; with
                      --key it reads FILE. The client trusts exactly this certificate.
  --key FILE          (server, with --tls) the private key of --cert, DER or PEM
  --ws                the tunnel connection is one WebSocket connection (ws://, or wss:// with
                      --tls), for HTTP proxies that forward WebSocket upgrades; give it to both
                      sides
  -h, --help          this text

ADDR is HOST:PORT; host names are resolved (localhost:7100, [::1]:7100).

example:
  tunnel server --listen 127.0.0.1:7100 --tls --cert /tmp/tunnel.der --ws
  tunnel client --server localhost:7100 --local 127.0.0.1:7200 --target 127.0.0.1:8000 \\
      --tls --cert /tmp/tunnel.der --ws";

/// The command line, checked: each mode with the options it needs and no others.
enum Command {
    Server {
        listen: String,
        tls: Option<ServerTls>,
        ws: bool,
    },
    Client {
        server: String,
        local: String,
        target: String,
        /// The certificate to trust, with `--tls`.
        cert: Option<String>,
        ws: bool,
    },
}

/// Where the server's certificate comes from.
enum ServerTls {
    /// Made at start-up and written (DER) to this file.
    SelfSigned { cert: String },
    /// Read from these files.
    Files { cert: String, key: String },
}

/// What a command line asks for: to run, or to print the help.
enum Parsed {
    Run(Command),
    Help,
}

fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let argv: Vec<String> = argv.into_iter().collect();
    if argv.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Parsed::Help);
    }
    let mut argv = argv.into_iter();
    let mode = argv.next().ok_or("missing mode (server or client)")?;
    if mode != "server" && mode != "client" {
        return Err(if mode.starts_with('-') {
            format!("unknown argument {mode:?} (the mode, server or client, comes first)")
        } else {
            format!("unknown mode {mode:?} (expected server or client)")
        });
    }
    let (mut listen, mut server, mut local, mut target, mut cert, mut key) =
        (None, None, None, None, None, None);
    let (mut tls, mut ws) = (false, false);
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or(format!("{flag} needs a value"));
        let slot = match flag.as_str() {
            "--listen" => &mut listen,
            "--server" => &mut server,
            "--local" => &mut local,
            "--target" => &mut target,
            "--cert" => &mut cert,
            "--key" => &mut key,
            "--tls" => {
                tls = true;
                continue;
            }
            "--ws" => {
                ws = true;
                continue;
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        };
        *slot = Some(value()?);
    }
    // Flags that belong to the other mode are mistakes, not something to ignore.
    let only = |set: bool, flag: &str, mode: &str| -> Result<(), String> {
        if set {
            Err(format!("{flag} is for the {mode} only"))
        } else {
            Ok(())
        }
    };
    if !tls && (cert.is_some() || key.is_some()) {
        let flag = if cert.is_some() { "--cert" } else { "--key" };
        return Err(format!(
            "{flag} needs --tls (without --tls the tunnel connection is not encrypted)"
        ));
    }
    if tls && cert.is_none() {
        return Err("--tls needs --cert FILE".into());
    }
    let need = |value: Option<String>, what: &str| value.ok_or(format!("missing {what}"));
    Ok(Parsed::Run(if mode == "server" {
        only(server.is_some(), "--server", "client")?;
        only(local.is_some(), "--local", "client")?;
        only(target.is_some(), "--target", "client")?;
        let tls = cert.map(|cert| match key {
            None => ServerTls::SelfSigned { cert },
            Some(key) => ServerTls::Files { cert, key },
        });
        Command::Server {
            listen: need(listen, "--listen ADDR")?,
            tls,
            ws,
        }
    } else {
        only(listen.is_some(), "--listen", "server")?;
        only(key.is_some(), "--key", "server")?;
        Command::Client {
            server: need(server, "--server ADDR")?,
            local: need(local, "--local ADDR")?,
            target: need(target, "--target HOST:PORT")?,
            cert,
            ws,
        }
    }))
}

fn main() {
    match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Help) => println!("{USAGE}\n{HELP}"),
        Ok(Parsed::Run(command)) => {
            if let Err(e) = smol::block_on(run(command)) {
                eprintln!("tunnel: {e}");
                exit(1);
            }
        }
        Err(message) => {
            eprintln!("tunnel: {message}\n{USAGE}");
            exit(2);
        }
    }
}

/// Reads a file named by a command-line flag; the error names both.
fn read(flag: &str, file: &str) -> io::Result<Vec<u8>> {
    std::fs::read(file).context(|| format!("reading {flag} {file}"))
}

/// An error about the contents of a file named by a command-line flag.
fn bad_file(flag: &str, file: &str, message: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{flag} {file}: {message}"),
    )
}

async fn run(command: Command) -> io::Result<()> {
    match command {
        Command::Server { listen, tls, ws } => {
            let tls = match tls {
                None => None,
                Some(ServerTls::SelfSigned { cert: file }) => {
                    let (cert, key) = tunnel_lib::self_signed()?;
                    std::fs::write(&file, cert.as_ref())
                        .context(|| format!("writing the certificate to --cert {file}"))?;
                    println!("server: wrote its self-signed certificate to {file}");
                    Some(tunnel_lib::server_tls(vec![cert], key)?)
                }
                Some(ServerTls::Files { cert, key }) => {
                    let certs = tunnel_lib::parse_certs(&read("--cert", &cert)?)
                        .map_err(|e| bad_file("--cert", &cert, e))?;
                    let key_der = tunnel_lib::parse_key(&read("--key", &key)?)
                        .map_err(|e| bad_file("--key", &key, e))?;
                    Some(
                        tunnel_lib::server_tls(certs, key_der)
                            .context(|| format!("--cert {cert} with --key {key}"))?,
                    )
                }
            };
            let listener = TcpListener::bind(listen.as_str())
                .await
                .context(|| format!("binding {listen}"))?;
            let mode = match (tls.is_some(), ws) {
                (false, false) => "plain TCP",
                (true, false) => "TLS",
                (false, true) => "WebSocket",
                (true, true) => "WebSocket over TLS",
            };
            println!("server: listening on {} ({mode})", listener.local_addr()?);
            tunnel_lib::serve(listener, ServerOptions { tls, ws }).await
        }
        Command::Client {
            server,
            local,
            target,
            cert,
            ws,
        } => {
            let tls = match cert {
                None => None,
                Some(file) => {
                    let cert = tunnel_lib::parse_certs(&read("--cert", &file)?)
                        .map_err(|e| bad_file("--cert", &file, e))?
                        .swap_remove(0);
                    Some(tunnel_lib::client_tls(cert)?)
                }
            };
            let listener = TcpListener::bind(local.as_str())
                .await
                .context(|| format!("binding --local {local}"))?;
            let (mux, driver) = tunnel_lib::connect(&server, &ClientOptions { tls, ws }).await?;
            let driver = smol::spawn(driver);
            println!(
                "client: forwarding {} -> {target} through {server}",
                listener.local_addr()?
            );
            // Ends when the listener fails or the session has ended (then: why it ended).
            let forwarding = tunnel_lib::run_client(listener, mux.clone(), target);
            let ended = async { Err(tunnel_lib::session_end(&server, &mux, driver.await)) };
            futures_lite::future::or(forwarding, ended).await
        }
    }
}
