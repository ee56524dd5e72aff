//! Replays the fuzz inputs (`fuzz/seeds/` and `fuzz/corpus/`) through the fuzz harnesses under
//! plain `cargo test --workspace`, so every input the fuzzers found interesting stays a regression test
//! without a nightly toolchain. Running the fuzzers themselves is described in `fuzz/README.md`.

#[allow(dead_code)]
#[path = "../../fuzz/harness.rs"]
mod harness;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// `fuzz/<kind>/<target>` at the repository's root (this package is `testsuite/`).
fn fuzz_dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target)
}

fn seed_input(target: &str, name: &str) -> Vec<u8> {
    let path = fuzz_dir("seeds", target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn replay(target: &str, run: fn(&[u8])) {
    for kind in ["seeds", "corpus"] {
        let dir = fuzz_dir(kind, target);
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "fuzz input {} failed", path.display());
            count += 1;
        }
        assert!(count >= 10, "{} holds only {count} inputs", dir.display());
    }
}

#[test]
fn decoder_inputs_replay_cleanly() {
    replay("decoder", harness::decode_chunked);
}

#[test]
fn session_inputs_replay_cleanly() {
    replay("session", |data| {
        harness::run_session(data);
    });
}

#[test]
fn smux_decoder_inputs_replay_cleanly() {
    replay("smux_decoder", |data| {
        let (protocol, _, rest) = harness::smux_dialect(data);
        harness::decode_chunked_as(rest, protocol);
    });
}

fn run_smux_session(data: &[u8]) -> harness::Outcome {
    let (protocol, role, rest) = harness::smux_dialect(data);
    harness::run_session_as(
        rest,
        smolmux::Config::default().protocol(protocol).role(role),
    )
}

#[test]
fn smux_session_inputs_replay_cleanly() {
    replay("smux_session", |data| {
        run_smux_session(data);
    });
}

#[test]
fn smux_session_harness_really_drives_the_session() {
    for name in ["open_data_fin", "v2_open_data_upd_fin"] {
        let outcome = run_smux_session(&seed_input("smux_session", name));
        assert!(outcome.accepted >= 1, "{name}: {outcome:?}");
        assert_eq!(outcome.bytes_read, 5, "{name}: {outcome:?}"); // "hello"
        assert_eq!(outcome.driver_error, None, "{name}: clean EOF: {outcome:?}");
    }
    // (v2_window_overrun may pass: the script drops or aborts the stream, and what arrives
    // after that counts as read and is acknowledged. The unit tests cover the overrun.)
    for name in [
        "upd_beyond_sent",
        "wrong_version",
        "upd_in_v1",
        "ping_in_smux",
        "syn_body",
        "wrong_parity",
        "stream_zero",
        "dup_syn",
        "psh_after_fin",
    ] {
        let outcome = run_smux_session(&seed_input("smux_session", name));
        assert_eq!(
            outcome.driver_error,
            Some(ErrorKind::InvalidData),
            "{name}: {outcome:?}"
        );
    }
    let outcome = run_smux_session(&seed_input("smux_session", "truncated"));
    assert_eq!(outcome.driver_error, Some(ErrorKind::UnexpectedEof));
}

#[test]
fn yamux_session_inputs_replay_cleanly() {
    replay("yamux_session", |data| {
        harness::run_yamux_session(data);
    });
}

#[test]
fn yamux_session_harness_really_drives_the_session() {
    for name in ["open_data_fin", "data_syn_fin"] {
        let outcome = harness::run_yamux_session(&seed_input("yamux_session", name));
        assert!(outcome.accepted >= 1, "{name}: {outcome:?}");
        assert_eq!(outcome.bytes_read, 5, "{name}: {outcome:?}"); // "hello"
        assert_eq!(outcome.driver_error, None, "{name}: clean EOF: {outcome:?}");
    }
    for name in [
        "window_overrun",
        "wu_overflow",
        "bad_version",
        "unknown_type",
        "dup_syn",
        "wrong_parity",
        "second_fin",
        "goaway_error",
    ] {
        let outcome = harness::run_yamux_session(&seed_input("yamux_session", name));
        assert_eq!(
            outcome.driver_error,
            Some(ErrorKind::InvalidData),
            "{name}: {outcome:?}"
        );
    }
    let outcome = harness::run_yamux_session(&seed_input("yamux_session", "truncated"));
    assert_eq!(outcome.driver_error, Some(ErrorKind::UnexpectedEof));
}

#[test]
fn session_harness_really_drives_the_session() {
    let outcome = harness::run_session(&seed_input("session", "open_data_fin"));
    assert!(outcome.accepted >= 1, "{outcome:?}");
    assert_eq!(outcome.bytes_read, 5, "{outcome:?}"); // "hello"
    assert_eq!(outcome.driver_error, None, "clean EOF: {outcome:?}");

    for (name, kind) in [
        ("bad_version", ErrorKind::InvalidData),
        ("dup_syn", ErrorKind::InvalidData),
        ("credits", ErrorKind::InvalidData),
        ("truncated", ErrorKind::UnexpectedEof),
    ] {
        let outcome = harness::run_session(&seed_input("session", name));
        assert_eq!(outcome.driver_error, Some(kind), "{name}: {outcome:?}");
    }
}
