//! A TCP port forwarder: many TCP connections carried over one multiplexed connection, on smol.
//!
//! ```text
//! # the far end: accepts tunnel connections and connects to the targets the client names
//! cargo run --example tunnel -- server --listen 127.0.0.1:7100
//! # the near end: listens locally, forwards each connection as one stream to TARGET
//! cargo run --example tunnel -- client --server 127.0.0.1:7100 --local 127.0.0.1:7200 --target 127.0.0.1:8000
//!
//! # the same over TLS: the server makes a self-signed certificate at start-up and writes it
//! # (DER) to --cert; the client trusts exactly that certificate
//! cargo run --example tunnel -- server --listen 127.0.0.1:7100 --tls --cert /tmp/tunnel.der
//! cargo run --example tunnel -- client --server 127.0.0.1:7100 --local 127.0.0.1:7200 \
//!     --target 127.0.0.1:8000 --tls --cert /tmp/tunnel.der
//! ```
//!
//! Each stream's metadata is its target `HOST:PORT`; half-close goes through both ways, so a
//! client that shuts down its write side after its request still gets the whole response.
//!
//! This is an example, not a hardened proxy: the server connects to whatever target a client
//! names, so expose it only to clients you trust (the TLS mode authenticates the server, not the
//! client).

use std::io;

use smol::net::TcpListener;

#[path = "tunnel/tunnel_lib.rs"]
mod tunnel_lib;

const USAGE: &str = "usage:
  tunnel server --listen ADDR [--tls --cert FILE]
  tunnel client --server ADDR --local ADDR --target HOST:PORT [--tls --cert FILE]";

/// The parsed command line.
#[derive(Default)]
struct Args {
    mode: String,
    listen: Option<String>,
    server: Option<String>,
    local: Option<String>,
    target: Option<String>,
    tls: bool,
    cert: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut argv = std::env::args().skip(1);
    let mut args = Args {
        mode: argv.next().ok_or("missing mode")?,
        ..Args::default()
    };
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = Some(value()?),
            "--server" => args.server = Some(value()?),
            "--local" => args.local = Some(value()?),
            "--target" => args.target = Some(value()?),
            "--cert" => args.cert = Some(value()?),
            "--tls" => args.tls = true,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = parse_args().unwrap_or_else(|message| {
        eprintln!("tunnel: {message}\n{USAGE}");
        std::process::exit(2);
    });
    if let Err(e) = smol::block_on(run(args)) {
        eprintln!("tunnel: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> io::Result<()> {
    let missing =
        |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("missing {what}"));
    let cert_file = || match (&args.cert, args.tls) {
        (Some(file), true) => Ok(Some(file.clone())),
        (None, true) => Err(missing("--cert FILE (needed with --tls)")),
        (_, false) => Ok(None),
    };
    match args.mode.as_str() {
        "server" => {
            let listen = args
                .listen
                .as_deref()
                .ok_or_else(|| missing("--listen ADDR"))?;
            let tls = match cert_file()? {
                None => None,
                Some(file) => {
                    let (cert, key) = tunnel_lib::self_signed()?;
                    std::fs::write(&file, cert.as_ref())?;
                    println!("server: wrote its self-signed certificate to {file}");
                    Some(tunnel_lib::server_tls(cert, key)?)
                }
            };
            let listener = TcpListener::bind(listen).await?;
            let mode = if tls.is_some() { "TLS" } else { "plain TCP" };
            println!("server: listening on {} ({mode})", listener.local_addr()?);
            tunnel_lib::serve(listener, tls).await
        }
        "client" => {
            let server = args
                .server
                .as_deref()
                .ok_or_else(|| missing("--server ADDR"))?;
            let local = args
                .local
                .as_deref()
                .ok_or_else(|| missing("--local ADDR"))?;
            let target = args
                .target
                .clone()
                .ok_or_else(|| missing("--target HOST:PORT"))?;
            let tls = match cert_file()? {
                None => None,
                Some(file) => {
                    let cert = std::fs::read(&file)?;
                    Some(tunnel_lib::client_tls(cert.into())?)
                }
            };
            let (mux, driver) = tunnel_lib::connect(server, tls).await?;
            let driver = smol::spawn(driver);
            let listener = TcpListener::bind(local).await?;
            println!(
                "client: forwarding {} -> {target} through {server}",
                listener.local_addr()?
            );
            // Ends when the listener fails or the session has ended (then: why it ended).
            let forwarding = tunnel_lib::run_client(listener, mux, target);
            let ended = async {
                driver.await?;
                Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the server closed the tunnel",
                ))
            };
            futures_lite::future::or(forwarding, ended).await
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown mode {other:?}"),
        )),
    }
}
