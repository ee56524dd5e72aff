//! An echo server and client over smolmux, on smol.
//!
//! ```text
//! cargo run --release --example echo_smol                            # both ends in this process
//! cargo run --release --example echo_smol -- server 127.0.0.1:7000   # just the server
//! cargo run --release --example echo_smol -- client localhost:7000    # just the client
//! cargo run --example echo_smol -- --help
//! ```
//!
//! Its counterparts on async-std and tokio are in the workspace member `testsuite/`:
//! `cargo run --release -p smolmux-testsuite --example echo_async_std` (or `tokio_echo`).
//!
//! The client opens a few streams at once over one TCP connection; the server echoes each
//! stream back until the client half-closes it. Addresses are `HOST:PORT`, and host names are
//! resolved (smol's `TcpStream::connect` and `TcpListener::bind` take a `&str` and resolve it on
//! smol's blocking thread pool).

use std::io;
use std::process::exit;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smolmux::{Config, Mux, Stream};

const USAGE: &str = "usage: echo_smol [server ADDR | client ADDR]";

const HELP: &str = "
An echo server and client over smolmux, on smol.

modes:
  (none)         run the server and the client in this process, over loopback
  server ADDR    accept connections on ADDR and echo every stream back
  client ADDR    connect to the server at ADDR, echo a message on three streams at once, then
                 close the session
  -h, --help     this text

ADDR is HOST:PORT; host names are resolved (localhost:7000). echo_async_std and tokio_echo
speak the same protocol: any of the three clients talks to any of the three servers.";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}\n{HELP}");
        return;
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Err(e) = smol::block_on(run(&args)) {
        eprintln!("echo_smol: {e}");
        exit(1);
    }
}

/// Runs the mode the command line names.
async fn run(args: &[&str]) -> io::Result<()> {
    match args {
        [] => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            smol::spawn(server(listener)).detach();
            client(&addr.to_string()).await
        }
        ["server", addr] => server(bind(addr).await?).await,
        ["client", addr] => client(addr).await,
        _ => {
            eprintln!("echo_smol: {}\n{USAGE}", usage_error(args));
            exit(2);
        }
    }
}

/// What is wrong with a command line that matches no mode.
fn usage_error(args: &[&str]) -> String {
    match args {
        ["server" | "client"] => format!("{} needs an ADDR (HOST:PORT)", args[0]),
        ["server" | "client", _, extra, ..] => format!("unknown argument {extra:?}"),
        [other, ..] => format!("unknown argument {other:?}"),
        [] => unreachable!("no arguments is a mode"),
    }
}

/// Prefixes an error with what was being done, keeping its kind.
fn context(what: String) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Binds `addr` (`HOST:PORT`, resolved by smol).
async fn bind(addr: &str) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(context(format!("binding {addr}")))
}

/// Accepts connections; on each, echoes every stream the client opens.
async fn server(listener: TcpListener) -> io::Result<()> {
    println!("server: listening on {}", listener.local_addr()?);
    loop {
        let (tcp, peer) = listener.accept().await?;
        smol::spawn(async move {
            let (mux, driver) = Mux::new(tcp.clone(), tcp, Config::default());
            let driver = smol::spawn(driver);
            // `accept` fails once the session has ended (here: the client closed it).
            while let Ok(stream) = mux.accept().await {
                smol::spawn(echo(stream)).detach();
            }
            match driver.await {
                Ok(()) => println!("server: connection from {peer} ended"),
                Err(e) => println!("server: connection from {peer} ended: {e}"),
            }
        })
        .detach();
    }
}

/// Copies the stream back to its opener, then half-closes it.
async fn echo(stream: Stream) -> io::Result<()> {
    let name = String::from_utf8_lossy(stream.metadata()).into_owned();
    let (reader, mut writer) = futures_lite::io::split(stream);
    let bytes = futures_lite::io::copy(reader, &mut writer).await?;
    writer.close().await?;
    println!("server: echoed {bytes} bytes on stream {name:?}");
    Ok(())
}

/// Connects to the server at `addr` (`HOST:PORT`, resolved by smol) and runs the session.
async fn client(addr: &str) -> io::Result<()> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(context(format!("connecting to {addr}")))?;
    echo_three(tcp)
        .await
        .map_err(context(format!("the session with {addr}")))
}

/// Opens three streams at once over one connection, sends a message on each and reads the echo.
async fn echo_three(tcp: TcpStream) -> io::Result<()> {
    let (mux, driver) = Mux::new(tcp.clone(), tcp, Config::default());
    let driver = smol::spawn(driver);

    let tasks: Vec<_> = (1..=3)
        .map(|i| {
            let mux = mux.clone();
            smol::spawn(async move {
                let mut stream = mux.open(format!("greeting {i}").as_bytes()).await?;
                let message = format!("hello from stream {i}");
                stream.write_all(message.as_bytes()).await?;
                stream.close().await?; // half-close: we are done writing, the echo still comes
                let mut reply = String::new();
                stream.read_to_string(&mut reply).await?;
                println!("client: stream {i} sent {message:?}, got back {reply:?}");
                io::Result::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }

    mux.close().await?; // FIN, then close our write half
    driver.await // resolves once the server has closed its end too
}
