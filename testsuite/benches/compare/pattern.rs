//! The data every stream carries: a per-stream slice of one pseudo-random pattern, so that
//! every receiver can check every byte.

use std::io;
use std::sync::LazyLock;

/// Period of the test pattern; not a multiple of any frame or write size.
pub(crate) const PERIOD: usize = (1 << 20) + 7;

/// Two periods of xorshift bytes, so any slice of up to one period starting in the first is
/// contiguous.
pub(crate) static PATTERN: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut p: Vec<u8> = (0..PERIOD)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    p.extend_from_within(..);
    p
});

/// Where stream `idx`'s byte sequence starts in the pattern.
pub(crate) fn offset_for(idx: u32) -> usize {
    (idx as usize).wrapping_mul(104_729).wrapping_add(7_919) % PERIOD
}

pub(crate) fn pattern_at(idx: u32, pos: u64, len: usize) -> &'static [u8] {
    let at = (offset_for(idx) + (pos % PERIOD as u64) as usize) % PERIOD;
    &PATTERN[at..at + len]
}

pub(crate) fn data_err(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
