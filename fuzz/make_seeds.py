#!/usr/bin/env python3
"""Writes the named seed inputs of the fuzz targets (seeds/): valid and malformed frame sequences.

Run from the fuzz/ directory: `python3 make_seeds.py`. The files are committed, and tests refer
to them by name; the fuzzers keep their own finds in corpus/.
"""
import os
import struct

def frame(cmd, sid, body=b"", version=1, length=None):
    n = len(body) if length is None else length
    return struct.pack("<BBHI", version, cmd, n, sid) + body

SYN, FIN, PSH, NOP, MORE, PING, PONG = 0, 1, 2, 3, 4, 0xA0, 0xA1
ping = frame(PING, 0, b'{"next_ping_in_ms":1000,"smolmux":1}')
picoping = frame(PING, 0, b'{"next_ping_in_ms":1800000}')

sequences = {
    "open_data_fin": ping + frame(SYN, 1, b"meta") + frame(PSH, 1, b"hello") + frame(FIN, 1),
    "picomux_style": picoping + frame(SYN, 7) + frame(PSH, 7, b"x" * 8192) + frame(MORE, 7, struct.pack("<H", 1491)),
    "abort": ping + frame(SYN, 2) + frame(PSH, 2, b"data") + frame(FIN, 2, b"reason"),
    "many_streams": ping + b"".join(frame(SYN, i, bytes([i])) for i in range(20)),
    "credits": ping + frame(SYN, 3) + b"".join(frame(PSH, 3, b"z") for _ in range(11)),
    "more_overflow": ping + frame(SYN, 4) + frame(MORE, 4, b"\xff\xff") * 50,
    "ping_flood": frame(PING, 0, b'{"next_ping_in_ms":1}') * 40 + frame(PONG, 0) * 5,
    "nop_empty": frame(NOP, 0, b"abc") + frame(SYN, 5) + frame(PSH, 5) * 5 + frame(FIN, 99),
    "dup_syn": frame(SYN, 0) + frame(SYN, 0),
    "bad_version": frame(SYN, 1, version=2),
    "bad_command": frame(0x05, 1),
    "bad_more": frame(MORE, 1, b"\x01\x02\x03"),
    "bad_ping": frame(PING, 0, b"[[[[[[[["),
    "truncated": frame(SYN, 1) + frame(PSH, 1, b"abcdef")[:-3],
    "big_metadata": frame(SYN, 6, b"m" * 65535),
}

def write(target, name, data):
    os.makedirs(f"seeds/{target}", exist_ok=True)
    with open(f"seeds/{target}/{name}", "wb") as f:
        f.write(data)

for name, peer in sequences.items():
    # decoder: 8 bytes of chunk sizes, then the byte stream.
    write("decoder", name, bytes([1, 3, 8, 200, 2, 9, 64, 5]) + peer)
    # session: 32 bytes of local operations (open, accept, write, read, close, abort, drop), then the peer.
    script = bytes([40, 3, 0, 1, 1, 2, 10, 3, 4, 12, 5, 8, 1, 20, 2, 33, 4, 6, 9, 7, 1, 0, 2, 3, 4, 5, 13, 1, 17, 2, 7, 4])
    write("session", name, script + peer)
