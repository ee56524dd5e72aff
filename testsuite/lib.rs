//! Nothing to see here: this package (`smolmux-testsuite`, never published) holds smolmux's
//! integration tests (`tests/`), the comparative benchmark (`benches/compare/`) and the
//! examples that need tokio, async-std, rustls or WebSocket (`examples/`), so that their
//! dependencies stay out of the `smolmux` package's build. Run them all from the repository's
//! root with `cargo test --workspace`.
