//! The example programs as a user meets them: their command lines, exit codes and messages.
//!
//! The examples are built once per run (see `built_examples`). Each run of a program has a hang
//! guard only: a program that should exit but does not is killed and the test fails.

mod built_examples;

use built_examples::example;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Hang guard only: every program here exits (or prints what we wait for) within a second.
const GUARD: Duration = Duration::from_secs(60);

/// Runs `name` with `args` to its end; kills it past the hang guard.
fn run(name: &str, args: &[&str]) -> Output {
    let mut child = example(name)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read both pipes on their own threads, so that a full pipe cannot stall the program.
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        let mut pipe = pipe.unwrap();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).unwrap();
            bytes
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > GUARD {
            let _ = child.kill();
            panic!("{name} {args:?} did not exit within {GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An error printed with `Debug` instead of `Display` (`Os { code: 111, kind: ... }`).
fn looks_like_debug(stderr: &str) -> bool {
    stderr.contains("Os {") || stderr.contains("kind: ") || stderr.contains("Custom {")
}

#[test]
fn every_example_answers_help_with_its_usage() {
    let expected: [(&str, &[&str]); 5] = [
        ("demo", &["usage: demo", "64 streams"]),
        (
            "tunnel",
            &[
                "usage:",
                "tunnel server --listen ADDR",
                "tunnel client --server ADDR",
                "--tls",
                "--cert FILE",
                "--key FILE",
                "--ws",
                "localhost",
            ],
        ),
        (
            "echo_smol",
            &["usage: echo_smol", "server ADDR", "client ADDR"],
        ),
        (
            "echo_async_std",
            &["usage: echo_async_std", "server ADDR", "client ADDR"],
        ),
        (
            "tokio_echo",
            &["usage: tokio_echo", "server ADDR", "client ADDR"],
        ),
    ];
    for (name, words) in expected {
        let help = run(name, &["--help"]);
        let stdout = text(&help.stdout);
        assert_eq!(help.status.code(), Some(0), "{name} --help: {help:?}");
        assert!(help.stderr.is_empty(), "{name} --help wrote to stderr");
        for word in words {
            assert!(
                stdout.contains(word),
                "{name} --help lacks {word:?}:\n{stdout}"
            );
        }
        let short = run(name, &["-h"]);
        assert_eq!(short.status.code(), Some(0), "{name} -h");
        assert_eq!(short.stdout, help.stdout, "{name}: -h differs from --help");
        // Help wins wherever it stands, as users type it after a half-written command line.
        if name != "demo" {
            let late = run(name, &["client", "--help"]);
            assert_eq!(late.status.code(), Some(0), "{name} client --help");
            assert_eq!(late.stdout, help.stdout, "{name} client --help");
        }
    }
}

#[test]
fn unknown_arguments_exit_2_with_the_usage_on_stderr() {
    let cases: [(&str, &[&str]); 8] = [
        ("demo", &["--frobnicate"]),
        ("tunnel", &["--frobnicate"]),
        (
            "tunnel",
            &["server", "--listen", "127.0.0.1:0", "--frobnicate"],
        ),
        ("tunnel", &["sever", "--listen", "127.0.0.1:0"]),
        ("echo_smol", &["--frobnicate"]),
        ("echo_smol", &["client", "127.0.0.1:1", "--frobnicate"]),
        ("echo_async_std", &["--frobnicate"]),
        ("tokio_echo", &["--frobnicate"]),
    ];
    for (name, args) in cases {
        let out = run(name, args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{name} {args:?} wrote to stdout");
        let culprit = if args[0] == "sever" {
            "sever"
        } else {
            "--frobnicate"
        };
        assert!(
            stderr.contains(&format!("{culprit:?}")) && stderr.contains("usage:"),
            "{name} {args:?}: {stderr}"
        );
    }
}

/// A fresh empty directory for this test's files.
fn scratch_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("examples_cli-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn cert_and_key_without_tls_are_rejected() {
    let dir = scratch_dir("cert_without_tls");
    let cert = dir.join("tunnel.der");
    let cert = cert.to_str().unwrap();
    // Were the flags ignored, the server would fail to bind an address in use here (exit 1) and
    // the client would find no server at port 1 (exit 1): neither passes for the rejection.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let unbindable = &taken.local_addr().unwrap().to_string();
    let cases: [&[&str]; 4] = [
        &["server", "--listen", unbindable, "--cert", cert],
        &[
            "server", "--listen", unbindable, "--cert", cert, "--key", cert,
        ],
        &["server", "--listen", unbindable, "--key", cert],
        &[
            "client",
            "--server",
            "127.0.0.1:1",
            "--local",
            "127.0.0.1:0",
            "--target",
            "127.0.0.1:1",
            "--cert",
            cert,
        ],
    ];
    for args in cases {
        let out = run("tunnel", args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("needs --tls"), "{args:?}: {stderr}");
        assert!(!Path::new(cert).exists(), "{args:?} wrote a certificate");
    }
    // The key belongs to the server.
    let out = run(
        "tunnel",
        &[
            "client",
            "--server",
            "127.0.0.1:1",
            "--local",
            "127.0.0.1:0",
            "--target",
            "127.0.0.1:1",
            "--tls",
            "--cert",
            cert,
            "--key",
            cert,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--key is for the server only"));
}

#[test]
fn missing_certificate_and_key_files_are_named() {
    let dir = scratch_dir("missing_files");
    let missing = dir.join("missing.der");
    let missing = missing.to_str().unwrap();
    let out = run(
        "tunnel",
        &[
            "client",
            "--server",
            "127.0.0.1:1",
            "--local",
            "127.0.0.1:0",
            "--target",
            "127.0.0.1:1",
            "--tls",
            "--cert",
            missing,
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!("tunnel: reading --cert {missing}: ")),
        "{stderr}"
    );
    assert!(!looks_like_debug(&stderr), "{stderr}");

    // A certificate file that exists, and a key file that does not.
    let cert = dir.join("cert.pem");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let out = run(
        "tunnel",
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--tls",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            missing,
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!("tunnel: reading --key {missing}: ")),
        "{stderr}"
    );
}

/// A loopback port with nothing listening: bound, noted and closed.
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_failed_connect_names_the_address_in_display_form() {
    let addr = format!("127.0.0.1:{}", dead_port());
    let cases: [(&str, Vec<&str>); 4] = [
        ("echo_smol", vec!["client", &addr]),
        ("echo_async_std", vec!["client", &addr]),
        ("tokio_echo", vec!["client", &addr]),
        (
            "tunnel",
            vec![
                "client",
                "--server",
                &addr,
                "--local",
                "127.0.0.1:0",
                "--target",
                "x:1",
            ],
        ),
    ];
    for (name, args) in cases {
        let out = run(name, &args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.starts_with(&format!("{name}: connecting to {addr}: ")),
            "{name}: {stderr}"
        );
        assert!(!looks_like_debug(&stderr), "{name}: {stderr}");
    }
}

/// A program that runs until killed, with its stdout read line by line and its stderr kept for
/// the failure message.
struct Running {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Running {
    fn start(name: &str, args: &[&str]) -> Running {
        let mut child = example(name)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                if send.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        Running {
            name: name.to_owned(),
            child,
            lines,
            stderr,
        }
    }

    /// The rest of the first line that starts with `prefix`.
    fn wait_for(&mut self, prefix: &str) -> String {
        loop {
            match self.lines.recv_timeout(GUARD) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    let stderr =
                        std::mem::replace(&mut self.stderr, std::thread::spawn(String::new));
                    let stderr = stderr.join().unwrap();
                    panic!(
                        "{}: no line {prefix:?} ({e}); its stderr:\n{stderr}",
                        self.name
                    )
                }
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn echo_clients_of_every_runtime_reach_a_server_by_host_name() {
    let mut server = Running::start("echo_smol", &["server", "localhost:0"]);
    let bound = server.wait_for("server: listening on ");
    let port = bound.rsplit_once(':').unwrap().1;
    let addr = format!("localhost:{port}");
    for name in ["echo_smol", "echo_async_std", "tokio_echo"] {
        let out = run(name, &["client", &addr]);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{name}: {out:?}");
        for i in 1..=3 {
            let line =
                format!("sent \"hello from stream {i}\", got back \"hello from stream {i}\"");
            assert!(stdout.contains(&line), "{name}:\n{stdout}");
        }
    }
}

#[test]
fn tunnel_over_websocket_and_tls_from_the_command_line() {
    let dir = scratch_dir("tunnel_wss");
    let cert = dir.join("tunnel.der");
    let cert = cert.to_str().unwrap();
    // The origin: answers one request, read to its EOF, with its length.
    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = origin.local_addr().unwrap().to_string();
    let origin = std::thread::spawn(move || {
        let (mut tcp, _) = origin.accept().unwrap();
        let mut request = Vec::new();
        tcp.read_to_end(&mut request).unwrap();
        tcp.write_all(format!("got {} bytes", request.len()).as_bytes())
            .unwrap();
    });

    let mut server = Running::start(
        "tunnel",
        &[
            "server",
            "--listen",
            "localhost:0",
            "--tls",
            "--cert",
            cert,
            "--ws",
        ],
    );
    let listening = server.wait_for("server: listening on ");
    assert!(listening.ends_with("(WebSocket over TLS)"), "{listening}");
    let port = listening
        .split(' ')
        .next()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .1;
    let server_addr = format!("localhost:{port}");
    let mut client = Running::start(
        "tunnel",
        &[
            "client",
            "--server",
            &server_addr,
            "--local",
            "127.0.0.1:0",
            "--target",
            &target,
            "--tls",
            "--cert",
            cert,
            "--ws",
        ],
    );
    let forwarding = client.wait_for("client: forwarding ");
    let local = forwarding.split(' ').next().unwrap();

    let mut tcp = TcpStream::connect(local).unwrap();
    tcp.write_all(&[7; 100_000]).unwrap();
    tcp.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "got 100000 bytes");
    origin.join().unwrap();
}
