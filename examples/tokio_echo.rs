//! An echo server and client over smolmux, on tokio.
//!
//! ```text
//! cargo run --example tokio_echo                            # both ends in this process
//! cargo run --example tokio_echo -- server 127.0.0.1:7000   # just the server
//! cargo run --example tokio_echo -- client 127.0.0.1:7000   # just the client
//! ```
//!
//! smolmux works with the `futures-io` traits; tokio's sockets implement tokio's own
//! `AsyncRead`/`AsyncWrite`, so each half of a `TcpStream` goes through `tokio-util`'s compat
//! layer (`.compat()` for the read half, `.compat_write()` for the write half). The driver is an
//! ordinary future and runs under `tokio::spawn`. (Its timers come from async-io, which runs its
//! own reactor thread, so they work under tokio too.) The wire protocol is the same as
//! `echo_smol`'s, so this client talks to that server and the other way round.

use std::io;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smolmux::{Config, Driver, Mux, Stream};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

#[tokio::main]
async fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        [] => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?.to_string();
            tokio::spawn(server(listener));
            client(&addr).await
        }
        ["server", addr] => server(TcpListener::bind(addr).await?).await,
        ["client", addr] => client(addr).await,
        _ => {
            eprintln!("usage: tokio_echo [server ADDR | client ADDR]");
            std::process::exit(2);
        }
    }
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
            let result = driver.await.expect("driver task panicked");
            println!("server: connection from {peer} ended: {result:?}");
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

/// Opens three streams at once over one connection, sends a message on each and reads the echo.
async fn client(addr: &str) -> io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
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
