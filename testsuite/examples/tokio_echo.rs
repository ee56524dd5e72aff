//! An echo server and client over smolmux, on tokio.
//!
//! ```text
//! # from the repository's root (this example is in the workspace member testsuite/)
//! cargo run --release -p smolmux-testsuite --example tokio_echo                            # both ends in this process
//! cargo run --release -p smolmux-testsuite --example tokio_echo -- server 127.0.0.1:7000   # just the server
//! cargo run --release -p smolmux-testsuite --example tokio_echo -- client localhost:7000    # just the client
//! cargo run -p smolmux-testsuite --example tokio_echo -- --help
//! ```
//!
//! smolmux works with the `futures-io` traits; tokio's sockets implement tokio's own
//! `AsyncRead`/`AsyncWrite`, so each half of a `TcpStream` goes through `tokio-util`'s compat
//! layer (`.compat()` for the read half, `.compat_write()` for the write half). The driver is an
//! ordinary future and runs under `tokio::spawn`. (Its timers come from async-io, which runs its
//! own reactor thread, so they work under tokio too.) The wire protocol is the same as
//! `echo_smol`'s, so this client talks to that server and the other way round.

use std::io;
use std::process::exit;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smolmux::{Config, Driver, Mux, Stream};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

const USAGE: &str = "usage: tokio_echo [server ADDR | client ADDR]";

const HELP: &str = "
An echo server and client over smolmux, on tokio (through tokio-util's compat layer).

modes:
  (none)         run the server and the client in this process, over loopback
  server ADDR    accept connections on ADDR and echo every stream back
  client ADDR    connect to the server at ADDR, echo a message on three streams at once, then
                 close the session
  -h, --help     this text

ADDR is HOST:PORT; host names are resolved (localhost:7000). echo_smol and echo_async_std
speak the same protocol: any of the three clients talks to any of the three servers.";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}\n{HELP}");
        return;
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Err(e) = run(&args).await {
        eprintln!("tokio_echo: {e}");
        exit(1);
    }
}

/// Runs the mode the command line names.
async fn run(args: &[&str]) -> io::Result<()> {
    match args {
        [] => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?.to_string();
            tokio::spawn(server(listener));
            client(&addr).await
        }
        ["server", addr] => server(bind(addr).await?).await,
        ["client", addr] => client(addr).await,
        _ => {
            eprintln!("tokio_echo: {}\n{USAGE}", usage_error(args));
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

/// Binds `addr` (`HOST:PORT`, resolved with tokio's `lookup_host`).
async fn bind(addr: &str) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(context(format!("binding {addr}")))
}

/// Wraps a tokio TCP stream in a session: its owned halves, each through the compat layer.
fn mux_over(tcp: TcpStream) -> (Mux, Driver) {
    let (read, write) = tcp.into_split();
    Mux::new(read.compat(), write.compat_write(), Config::default())
}

/// Accepts connections; on each, echoes every stream the client opens.
async fn server(listener: TcpListener) -> io::Result<()> {
    println!("server: listening on {}", listener.local_addr()?);
    loop {
        let (tcp, peer) = listener.accept().await?;
        tokio::spawn(async move {
            let (mux, driver) = mux_over(tcp);
            let driver = tokio::spawn(driver);
            // `accept` fails once the session has ended (here: the client closed it).
            while let Ok(stream) = mux.accept().await {
                tokio::spawn(echo(stream));
            }
            match driver.await.expect("driver task panicked") {
                Ok(()) => println!("server: connection from {peer} ended"),
                Err(e) => println!("server: connection from {peer} ended: {e}"),
            }
        });
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

/// Connects to the server at `addr` (`HOST:PORT`, resolved with tokio's `lookup_host`) and runs
/// the session.
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
    tcp.set_nodelay(true)?;
    let (mux, driver) = mux_over(tcp);
    let driver = tokio::spawn(driver);

    let tasks: Vec<_> = (1..=3)
        .map(|i| {
            let mux = mux.clone();
            tokio::spawn(async move {
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
        task.await.expect("stream task panicked")?;
    }

    // No new streams, FIN on every stream, and both sessions end once every stream is done.
    mux.close().await?;
    driver.await.expect("driver task panicked")
}
