#![no_main]

#[allow(dead_code)] // each target uses one of the harnesses
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (protocol, role, rest) = harness::smux_dialect(data);
    let config = smolmux::Config::default().protocol(protocol).role(role);
    harness::run_session_as(rest, config);
});
