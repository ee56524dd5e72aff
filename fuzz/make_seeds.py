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

# The smux targets: the first byte picks the dialect (bit 0: version 1 or 2; bit 1: we are the
# client or the server), so the peer's streams are even (we are the client) or odd.
UPD = 4
V1_CLIENT, V2_CLIENT, V1_SERVER, V2_SERVER = 0, 1, 2, 3

def upd(sid, consumed, window, version=2):
    return frame(UPD, sid, struct.pack("<II", consumed, window), version=version)

def smux_sequences():
    v1 = lambda cmd, sid, body=b"", **kw: frame(cmd, sid, body, version=1, **kw)
    v2 = lambda cmd, sid, body=b"", **kw: frame(cmd, sid, body, version=2, **kw)
    return {
        "open_data_fin": (V1_CLIENT, v1(SYN, 2) + v1(PSH, 2, b"hello") + v1(FIN, 2)),
        "v2_open_data_upd_fin": (V2_SERVER, v2(SYN, 1) + v2(PSH, 1, b"hello") + upd(1, 0, 65536) + v2(FIN, 1)),
        "nop_keepalive": (V2_CLIENT, v2(NOP, 0) * 20 + v2(SYN, 2) + v2(NOP, 0) + v2(PSH, 2, b"x") + v2(NOP, 0)),
        "many_streams": (V1_SERVER, b"".join(v1(SYN, 2 * i + 1) + v1(PSH, 2 * i + 1, bytes([i]) * 9) for i in range(40))),
        "empty_psh": (V1_CLIENT, v1(SYN, 4) + v1(PSH, 4) * 30 + v1(PSH, 4, b"end") + v1(FIN, 4)),
        "unknown_streams": (V2_CLIENT, b"".join(v2(PSH, i, b"u" * 1000) + upd(i, 0, 1 << 30) + v2(FIN, i) for i in range(2, 60, 2))),
        "big_frames": (V1_CLIENT, v1(SYN, 2) + v1(PSH, 2, b"b" * 65535) * 12 + v1(FIN, 2)),
        "v2_window_overrun": (V2_CLIENT, v2(SYN, 2) + v2(PSH, 2, b"w" * 65535) * 12),
        "upd_beyond_sent": (V2_CLIENT, v2(SYN, 2) + upd(2, 100, 65536)),
        "upd_huge_window": (V2_SERVER, v2(SYN, 1) + upd(1, 0, 0xFFFFFFFF) + v2(PSH, 1, b"hi")),
        "wrong_version": (V1_CLIENT, v2(SYN, 2)),
        "upd_in_v1": (V1_CLIENT, v1(SYN, 2) + v1(UPD, 2, b"\0" * 8)),
        "ping_in_smux": (V2_CLIENT, v2(PING, 0, b'{"next_ping_in_ms":1000}')),
        "syn_body": (V2_SERVER, v2(SYN, 1, b"meta")),
        "wrong_parity": (V1_CLIENT, v1(SYN, 3)),
        "stream_zero": (V1_SERVER, v1(SYN, 0)),
        "dup_syn": (V2_CLIENT, v2(SYN, 2) + v2(SYN, 2)),
        "psh_after_fin": (V1_SERVER, v1(SYN, 1) + v1(FIN, 1) + v1(PSH, 1, b"late")),
        "truncated": (V2_CLIENT, v2(SYN, 2) + v2(PSH, 2, b"abcdef")[:-3]),
    }

for name, (dialect, peer) in smux_sequences().items():
    write("smux_decoder", name, bytes([dialect, 1, 3, 8, 200, 2, 9, 64, 5]) + peer)
    script = bytes([40, 3, 0, 1, 1, 2, 10, 3, 4, 12, 5, 8, 1, 20, 2, 33, 4, 6, 9, 7, 1, 0, 2, 3, 4, 5, 13, 1, 17, 2, 7, 4])
    write("smux_session", name, bytes([dialect]) + script + peer)

# The yamux target: the first byte picks our role (bit 0: client or server), so the peer's
# streams are even (we are the client) or odd. 12-byte big-endian headers; only Data has a body.
Y_DATA, Y_WU, Y_PING, Y_GOAWAY = 0, 1, 2, 3
Y_SYN, Y_ACK, Y_FIN, Y_RST = 1, 2, 4, 8
Y_CLIENT, Y_SERVER = 0, 1

def yframe(ftype, flags, sid, length=0, body=b"", version=0):
    return struct.pack(">BBHII", version, ftype, flags, sid, length) + body

def ydata(flags, sid, body):
    return yframe(Y_DATA, flags, sid, len(body), body)

def yamux_sequences():
    return {
        "open_data_fin": (Y_CLIENT, yframe(Y_WU, Y_SYN, 2) + ydata(0, 2, b"hello") + yframe(Y_WU, Y_FIN, 2)),
        "data_syn_fin": (Y_SERVER, ydata(Y_SYN | Y_FIN, 1, b"hello")),
        "syn_delta": (Y_SERVER, yframe(Y_WU, Y_SYN, 1, 65536) + ydata(0, 1, b"x" * 9000) + yframe(Y_WU, 0, 1, 1 << 20)),
        "pings": (Y_CLIENT, b"".join(yframe(Y_PING, Y_SYN, 0, i) for i in range(80)) + yframe(Y_PING, Y_ACK, 0, 7)),
        "goaway_then_data": (Y_CLIENT, ydata(Y_SYN, 2, b"a") + yframe(Y_GOAWAY, 0, 0, 0) * 30 + ydata(Y_FIN, 2, b"b")),
        "many_streams": (Y_SERVER, b"".join(ydata(Y_SYN, 2 * i + 1, bytes([i]) * 9) for i in range(40))),
        "rst": (Y_CLIENT, ydata(Y_SYN, 2, b"d") + yframe(Y_WU, Y_RST, 2) + yframe(Y_WU, Y_ACK, 1) + yframe(Y_WU, Y_RST, 1)),
        "unknown_streams": (Y_CLIENT, b"".join(ydata(0, i, b"u" * 500) + yframe(Y_WU, 0, i, 1 << 30) for i in range(2, 40, 2))),
        "fin_without_syn": (Y_SERVER, yframe(Y_WU, Y_FIN, 1) + ydata(Y_FIN, 3, b"")),
        "big_frame": (Y_CLIENT, ydata(Y_SYN, 2, b"B" * 14000) + yframe(Y_WU, Y_FIN, 2)),
        "window_overrun": (Y_CLIENT, yframe(Y_WU, Y_SYN, 2) + yframe(Y_DATA, 0, 2, 262145) + b"o" * 100),
        "wu_overflow": (Y_SERVER, yframe(Y_WU, Y_SYN, 1, 0xFFFFFFFF)),
        "bad_version": (Y_CLIENT, yframe(Y_WU, Y_SYN, 2, version=1)),
        "unknown_type": (Y_CLIENT, yframe(4, 0, 2)),
        "dup_syn": (Y_CLIENT, yframe(Y_WU, Y_SYN, 2) + yframe(Y_WU, Y_SYN, 2)),
        "wrong_parity": (Y_CLIENT, yframe(Y_WU, Y_SYN, 3)),
        "second_fin": (Y_SERVER, ydata(Y_SYN | Y_FIN, 1, b"x") + yframe(Y_WU, Y_FIN, 1)),
        "goaway_error": (Y_SERVER, yframe(Y_GOAWAY, 0, 0, 1)),
        "truncated": (Y_CLIENT, yframe(Y_WU, Y_SYN, 2) + ydata(0, 2, b"abcdef")[:-3]),
    }

for name, (role, peer) in yamux_sequences().items():
    script = bytes([40, 3, 0, 1, 1, 2, 10, 3, 4, 12, 5, 8, 1, 20, 2, 33, 4, 6, 9, 7, 1, 0, 2, 3, 4, 5, 13, 1, 17, 2, 7, 4])
    write("yamux_session", name, bytes([role]) + script + peer)
