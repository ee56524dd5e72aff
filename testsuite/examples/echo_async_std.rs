//! An echo server and client over smolmux, on async-std.
//!
//! ```text
//! # from the repository's root (this example is in the workspace member testsuite/)
//! cargo run --release -p smolmux-testsuite --example echo_async_std                            # both ends in this process
//! cargo run --release -p smolmux-testsuite --example echo_async_std -- server 127.0.0.1:7000   # just the server
//! cargo run --release -p smolmux-testsuite --example echo_async_std -- client localhost:7000    # just the client
//! cargo run -p smolmux-testsuite --example echo_async_std -- --help
//! ```
//!
//! The same program as `echo_smol`, on another executor: smolmux needs only `AsyncRead` and
//! `AsyncWrite` halves and somewhere to spawn its driver.

use std::io;
use std::process::exit;

use async_std::net::{TcpListener, TcpStream};
use async_std::task;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smolmux::{Config, Mux, Stream};

const USAGE: &str = "usage: echo_async_std [server ADDR | client ADDR]";

const HELP: &str = "
An echo server and client over smolmux, on async-std.

modes:
  (none)         run the server and the client in this process, over loopback
  server ADDR    accept connections on ADDR and echo every stream back
  client ADDR    connect to the server at ADDR, echo a message on three streams at once, then
                 close the session
  -h, --help     this text

ADDR is HOST:PORT; host names are resolved (localhost:7000). echo_smol and tokio_echo speak
the same protocol: any of the three clients talks to any of the three servers.";

#[async_std::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}\n{HELP}");
        return;
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Err(e) = run(&args).await {
        eprintln!("echo_async_std: {e}");
        exit(1);
    }
}

/// Runs the mode the command line names.
async fn run(args: &[&str]) -> io::Result<()> {
    match args {
        [] => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            task::spawn(server(listener));
            client(&addr.to_string()).await
        }
        ["server", addr] => server(bind(addr).await?).await,
        ["client", addr] => client(addr).await,
        _ => {
            eprintln!("echo_async_std: {}\n{USAGE}", usage_error(args));
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

/// Binds `addr` (`HOST:PORT`, resolved through async-std's `ToSocketAddrs`).
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
        task::spawn(async move {
            let (mux, driver) = Mux::new(tcp.clone(), tcp, Config::default());
            let driver = task::spawn(driver);
            // `accept` fails once the session has ended (here: the client closed it).
            while let Ok(stream) = mux.accept().await {
                task::spawn(echo(stream));
            }
            match driver.await {
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

/// Connects to the server at `addr` (`HOST:PORT`, resolved through async-std's
/// `ToSocketAddrs`) and runs the session.
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
    let driver = task::spawn(driver);

    let tasks: Vec<_> = (1..=3)
        .map(|i| {
            let mux = mux.clone();
            task::spawn(async move {
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

    // `close` tells the server that no new streams will come, waits until every stream has
    // finished both ways, and ends both sessions. (async-std's `TcpStream::close` only flushes:
    // against a picomux peer, which needs the connection's end, call
    // `tcp.shutdown(Shutdown::Write)` after `close`.)
    mux.close().await?;
    driver.await
}
