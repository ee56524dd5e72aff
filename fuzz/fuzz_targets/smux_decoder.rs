#![no_main]

#[allow(dead_code)] // each target uses one of the harnesses
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (protocol, _, rest) = harness::smux_dialect(data);
    harness::decode_chunked_as(rest, protocol);
});
