//! The workspace's example programs, built once per test binary by
//! `cargo build --workspace --examples` (nothing to do when `cargo test --workspace` has just
//! built them, as it does) and found from cargo's own report of what it built, so that the
//! tests work with any target directory. The examples live in two packages: `demo`,
//! `echo_smol` and `mux_peer` in `smolmux` (the repository's root), the others in
//! `testsuite/examples`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The examples' executables by name.
fn examples() -> &'static HashMap<String, PathBuf> {
    static BUILT: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let mut build = Command::new(cargo);
        build.args([
            "build",
            "--quiet",
            "--workspace",
            "--examples",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"),
        ]);
        if !cfg!(debug_assertions) {
            build.arg("--release"); // as `cargo test --release` built this test
        }
        // Cargo runs tests with the package's variables set (CARGO_MANIFEST_DIR, CARGO_PKG_*,
        // ...). A build script that watches one (ring's watches CARGO_MANIFEST_DIR) would see
        // it change and rebuild here, and again in the next plain `cargo build`: clear them.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                ]
                .contains(&&*name)
            {
                build.env_remove(&*name);
            }
        }
        let output = build
            .stderr(Stdio::inherit())
            .output()
            .expect("cannot run cargo");
        assert!(
            output.status.success(),
            "cargo build --workspace --examples failed"
        );
        let mut built = HashMap::new();
        for line in String::from_utf8(output.stdout).unwrap().lines() {
            let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let is_example = message["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "example"));
            if let (true, Some(name), Some(exe)) = (
                message["reason"] == "compiler-artifact" && is_example,
                message["target"]["name"].as_str(),
                message["executable"].as_str(),
            ) {
                built.insert(name.to_owned(), PathBuf::from(exe));
            }
        }
        built
    })
}

/// A command for the example `name` (of either package), its stdin closed.
pub fn example(name: &str) -> Command {
    let Some(exe) = examples().get(name) else {
        panic!("cargo built no example {name}");
    };
    let mut command = Command::new(exe);
    command.stdin(Stdio::null());
    command
}
