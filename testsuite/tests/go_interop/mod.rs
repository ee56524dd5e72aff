//! What the Go interop tests (`smux_interop.rs`, `yamux_interop.rs`) share: building a Go peer
//! from `tests/go/NAME` in GOPATH mode, offline, once per run into cargo's target directory
//! (Go's build cache makes later builds quick); running it as a child process whose output
//! lines arrive on a channel; and smolmux's side of the byte pattern both Go peers and
//! `examples/mux_peer.rs` write and check.
//!
//! Without Go or the library's sources, a test prints a loud SKIP and passes, unless `CI` is
//! set: then it fails.

#![allow(dead_code)] // each test binary uses its own part

use std::io::{self, BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::Task;
use smolmux::{Config, Mux, Stream};

use crate::support::{hang_guard, spawn, HANG_GUARD};

/// The library a Go peer is built against.
pub struct GoLibrary {
    /// The test binary, for the SKIP message.
    pub test: &'static str,
    /// The peer's directory under `tests/go/`.
    pub peer: &'static str,
    /// The library's import path under `$GOPATH/src`.
    pub import_path: &'static str,
    /// The Debian package that installs it.
    pub debian_package: &'static str,
    /// The variable that overrides the GOPATH (default `/usr/share/gocode`).
    pub gopath_variable: &'static str,
}

/// Builds the Go peer of `library`; `None` (after a loud SKIP) without Go or the library.
pub fn build_go_peer(library: &GoLibrary) -> Option<PathBuf> {
    let gopath =
        std::env::var(library.gopath_variable).unwrap_or_else(|_| "/usr/share/gocode".into());
    let sources = Path::new(&gopath).join("src").join(library.import_path);
    let go = Command::new("go").arg("version").output();
    let missing = match go {
        Err(e) => Some(format!("cannot run `go` ({e}); install golang-go")),
        Ok(_) if !sources.is_dir() => Some(format!(
            "no sources at {} (install {} or set {})",
            sources.display(),
            library.debian_package,
            library.gopath_variable
        )),
        Ok(_) => None,
    };
    if let Some(why) = missing {
        if std::env::var_os("CI").is_some() {
            panic!(
                "CI is set, and the Go interop tests of {} cannot run: {why}",
                library.test
            );
        }
        // Straight to stderr: the test harness captures `eprintln!` of passing tests.
        let _ = writeln!(
            io::stderr(),
            "\n*** SKIP {}: {why}; these tests pass WITHOUT RUNNING ***\n",
            library.test
        );
        return None;
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(library.peer);
    let build = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/go")
                .join(library.peer),
        )
        .env("GO111MODULE", "off")
        .env("GOPATH", &gopath)
        .env("GOFLAGS", "")
        .env(
            "GOCACHE",
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go-build-cache"),
        )
        .output()
        .expect("running go build");
    assert!(
        build.status.success(),
        "go build of tests/go/{} failed:\n{}",
        library.peer,
        String::from_utf8_lossy(&build.stderr)
    );
    Some(out)
}

// ----- the Go peer process -----

/// A child process, killed and reaped when dropped, whose output lines arrive on a channel.
pub struct Peer {
    name: String,
    child: Child,
    lines: Receiver<String>,
    /// Every line seen so far, for failure messages.
    transcript: Vec<String>,
}

impl Peer {
    pub fn spawn(mut command: Command) -> Peer {
        let name = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let (send, lines) = mpsc::channel();
        let stdout: Box<dyn io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let stderr: Box<dyn io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for (pipe, tag) in [(stdout, ""), (stderr, "stderr: ")] {
            let send = send.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = send.send(format!("{tag}{line}"));
                }
            });
        }
        Peer {
            name,
            child,
            lines,
            transcript: Vec::new(),
        }
    }

    /// The next stdout line that starts with `prefix` (others are skipped into the transcript).
    pub fn line_starting(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    self.transcript.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "hang guard: {} printed no {prefix:?}: {:#?}",
                        self.name, self.transcript
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "{} ended without printing {prefix:?}: {:#?}",
                        self.name, self.transcript
                    )
                }
            }
        }
    }

    /// The address a server printed in its `listening on ADDR` line.
    pub fn listen_addr(&mut self) -> String {
        let line = self.line_starting("listening on ");
        line["listening on ".len()..].trim().to_owned()
    }

    /// Waits (under the hang guard) for the process to exit; returns its status and all output.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                start.elapsed() < HANG_GUARD,
                "hang guard: {} did not exit: {:#?}",
                self.name,
                self.transcript
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        // The pipes close with the process: collect what the reader threads still hold.
        let mut transcript = std::mem::take(&mut self.transcript);
        transcript.extend(self.lines.iter());
        (status, transcript)
    }

    /// Waits for a client to exit 0 after printing its `ok ...` line; returns that line.
    pub fn expect_ok(self) -> String {
        let name = self.name.clone();
        let (status, transcript) = self.finish();
        let ok = transcript.iter().find(|l| l.starts_with("ok streams="));
        match (status.success(), ok) {
            (true, Some(line)) => line.clone(),
            _ => panic!("{name} failed ({status}): {transcript:#?}"),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a child off the executor's threads.
pub async fn finish(peer: Peer) -> (ExitStatus, Vec<String>) {
    smol::unblock(move || peer.finish()).await
}

pub async fn expect_ok(peer: Peer) -> String {
    smol::unblock(move || peer.expect_ok()).await
}

// ----- smolmux's side -----

/// Dials `addr` (a client, as `config` says); the driver runs on the test's executor.
pub async fn dial(addr: &str, config: Config) -> (Mux, Task<io::Result<()>>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mux, driver) = Mux::new(tcp.clone(), tcp, config);
    (mux, spawn(driver))
}

/// A listener on an ephemeral loopback port, and its address.
pub async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

/// Accepts one connection on `listener` (a server, as `config` says).
pub async fn accept(listener: &TcpListener, config: Config) -> (Mux, Task<io::Result<()>>) {
    let (tcp, _) = hang_guard(listener.accept()).await.unwrap();
    let (mux, driver) = Mux::new(tcp.clone(), tcp, config);
    (mux, spawn(driver))
}

/// Byte `i` of every stream, as `examples/mux_peer.rs` and the Go peer define it.
pub fn pattern_byte(i: u64) -> u8 {
    ((i % 251 * 31 + 7) % 251) as u8
}

/// Writes `bytes` pattern bytes in writes of at most `write_size`, flushing each one when they
/// are that small (so that each goes out as a frame of its own).
pub async fn send_pattern(
    writer: &mut (impl AsyncWrite + Unpin),
    bytes: u64,
    write_size: usize,
) -> io::Result<()> {
    let mut sent = 0;
    while sent < bytes {
        let n = (write_size as u64).min(bytes - sent);
        let chunk: Vec<u8> = (sent..sent + n).map(pattern_byte).collect();
        writer.write_all(&chunk).await?;
        if write_size < 1024 {
            writer.flush().await?;
        }
        sent += n;
    }
    Ok(())
}

/// Reads to EOF, checking every byte against the pattern; returns how many came.
pub async fn read_pattern(reader: &mut (impl AsyncRead + Unpin)) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 << 10];
    let mut received = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(received);
        }
        for (k, &b) in buf[..n].iter().enumerate() {
            let at = received + k as u64;
            assert_eq!(b, pattern_byte(at), "byte {at} differs from the pattern");
        }
        received += n as u64;
    }
}

/// Writes `bytes` pattern bytes in writes of `write_size` while reading the echo back; then
/// half-closes and expects exactly the pattern and EOF.
pub async fn exchange(stream: Stream, bytes: u64, write_size: usize) {
    let (mut reader, mut writer) = stream.split();
    let writing = spawn(async move {
        send_pattern(&mut writer, bytes, write_size).await?;
        writer.close().await
    });
    assert_eq!(read_pattern(&mut reader).await.unwrap(), bytes);
    writing.await.unwrap();
}

/// The driver's end, which must come (the hang guard bounds the wait).
pub async fn ended(driver: Task<io::Result<()>>) -> io::Result<()> {
    hang_guard(driver).await
}
