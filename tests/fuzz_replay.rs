//! Replays the fuzz corpus (`fuzz/corpus/`) through the fuzz harnesses under plain `cargo test`,
//! so every input the fuzzers found interesting stays a regression test without a nightly
//! toolchain. Running the fuzzers themselves is described in `fuzz/README.md`.

#[allow(dead_code)]
#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

fn corpus_file(target: &str, name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "fuzz input {} failed", path.display());
        count += 1;
    }
    assert!(count >= 10, "corpus for {target} is missing: {count} files");
}

#[test]
fn decoder_corpus_replays_cleanly() {
    replay("decoder", harness::decode_chunked);
}

#[test]
fn session_corpus_replays_cleanly() {
    replay("session", |data| {
        harness::run_session(data);
    });
}

#[test]
fn session_harness_really_drives_the_session() {
    let outcome = harness::run_session(&corpus_file("session", "open_data_fin"));
    assert!(outcome.accepted >= 1, "{outcome:?}");
    assert_eq!(outcome.bytes_read, 5, "{outcome:?}"); // "hello"
    assert_eq!(outcome.driver_error, None, "clean EOF: {outcome:?}");

    for (seed, kind) in [
        ("bad_version", std::io::ErrorKind::InvalidData),
        ("dup_syn", std::io::ErrorKind::InvalidData),
        ("credits", std::io::ErrorKind::InvalidData),
        ("truncated", std::io::ErrorKind::UnexpectedEof),
    ] {
        let outcome = harness::run_session(&corpus_file("session", seed));
        assert_eq!(outcome.driver_error, Some(kind), "{seed}: {outcome:?}");
    }
}
