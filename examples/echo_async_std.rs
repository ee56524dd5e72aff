//! An echo server and client over smolmux, on async-std.
//!
//! ```text
//! cargo run --example echo_async_std                            # both ends in this process
//! cargo run --example echo_async_std -- server 127.0.0.1:7000   # just the server
//! cargo run --example echo_async_std -- client 127.0.0.1:7000   # just the client
//! ```
//!
//! The same program as `echo_smol`, on another executor: smolmux needs only `AsyncRead` and
//! `AsyncWrite` halves and somewhere to spawn its driver.

use std::io;
use std::net::SocketAddr;

use async_std::net::{TcpListener, TcpStream};
use async_std::task;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smolmux::{Config, Mux, Stream};

#[async_std::main]
async fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        [] => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            task::spawn(server(listener));
            client(addr).await
        }
        ["server", addr] => server(TcpListener::bind(addr).await?).await,
        ["client", addr] => client(parse(addr)?).await,
        _ => {
            eprintln!("usage: echo_async_std [server ADDR | client ADDR]");
            std::process::exit(2);
        }
    }
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
            println!("server: connection from {peer} ended: {:?}", driver.await);
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
async fn client(addr: SocketAddr) -> io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
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

fn parse(addr: &str) -> io::Result<SocketAddr> {
    addr.parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))
}
