#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/corpus/<target>/ (deterministic; re-run to refresh).

The byte layouts follow PROTOCOL.md. Files the fuzzer adds later (minimised with
`cargo fuzz cmin`) may sit beside these; every file is replayed by `cargo test`.
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def header(kind=1, name=b"a.txt", length=5, known=True, version=1, magic=b"QP2P",
           body_len=None, name_len=None, extra=b"", msg_id=bytes(range(16)), digest=None):
    # digest: the algorithm byte of a version 2 header (1 SHA-256, 2 BLAKE3).
    body = msg_id + bytes([1 if known else 0]) + struct.pack(">Q", length)
    if digest is not None:
        body += bytes([digest])
    body += struct.pack(">H", len(name) if name_len is None else name_len) + name + extra
    n = len(body) if body_len is None else body_len
    return magic + bytes([version, kind]) + struct.pack(">H", n) + body


def ack(status=0, nbytes=12345, sha=b"\x11" * 32, magic=b"QP2A", version=1):
    return magic + bytes([version, status]) + struct.pack(">Q", nbytes) + sha


seeds = {
    "header": [
        header(),
        header(name=b""),
        header(known=False, length=0, name=b"stdin"),
        header(length=2**64 - 1, name="dir/ü/ß.bin".encode()),
        header(kind=2, name=b"", length=1),
        header(kind=3, name=b"bench"),
        header(kind=4, name=b"bench"),
        header(kind=5, name=b"req", length=64),
        header(kind=0),
        header(kind=6),
        header(kind=0xff),
        header(version=0),
        header(version=2),
        header(magic=b"QP2Q"),
        header(magic=b"GET "),
        header(body_len=0),
        header(body_len=26),
        header(body_len=27, name=b""),
        header(body_len=8192, name=b"x" * (8192 - 27)),
        header(body_len=8193, name=b"x" * (8193 - 27)),
        header(body_len=0xFFFF),
        header(name_len=0xFFFF),
        header(name_len=6, name=b"abc"),
        header(name=b"\xff\xfe\xfd"),
        header(name=b"\xc3"),
        header(extra=b"future fields"),
        header(name=b"../../etc/passwd"),
        header(name=b"a\x00b\nc"),
        header()[:7],
        header()[:8],
        header()[:30],
        b"",
        b"QP2P",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        header() + b"payload follows",
        header(version=2, digest=2),
        header(version=2, digest=1),
        header(version=2, digest=9),
        header(version=2, digest=0),
        header(version=2, digest=2, body_len=27, name=b""),
        header(version=2, digest=2, body_len=28, name=b""),
        header(version=2, digest=2, extra=bytes([1, 0, 32]) + b"\x22" * 32),
        header(version=2, digest=2, body_len=8192, name=b"x" * (8192 - 28)),
        header(version=2, digest=2, kind=2, name=b"", length=1),
        header(version=3, digest=2),
    ],
    "ack": [
        ack(),
        ack(status=1),
        ack(status=2),
        ack(status=0xff),
        ack(nbytes=0, sha=b"\x00" * 32),
        ack(nbytes=2**64 - 1, sha=b"\xff" * 32),
        ack(version=0),
        ack(version=2),
        ack(magic=b"QP2P"),
        ack()[:45],
        ack() + b"\x00",
        ack()[:4],
        b"",
        b"\x00" * 46,
    ],
    "sanitize": [s.encode() if isinstance(s, str) else s for s in [
        "a.txt", "", ".", "..", "...", "/", "//", "/./../", "../../x", "/etc/passwd",
        "a/../../b", "..\\..\\win.ini", "a\\b/c", "a\x01b\nc", "\x00", "\x7f", "\u0085x",
        ".hidden", "dir/.hidden/f", "a//b", "a/./b", "é" * 150, "n" * 296 + ".txt",
        "x" * 250 + "." + "y" * 20, "." * 300, "." * 199 + "x" * 10, "d/" * 64, "d/" * 65,
        "ß/ü/日本語.txt", "CON", "a " , " ", "a\u202eb", b"\xff\xfe",
        "\u00e9" * 99 + "." + "e" * 15, "x" * 199 + "é",
    ]],
    "target": [s.encode() if isinstance(s, str) else s for s in [
        "127.0.0.1:9000", "127.0.0.1", "[::1]:9000", "[::1]", "::1", "localhost:80",
        "example.org", "host:", ":80", "", "[::1", "[::1]x", "[::1]:", "a b:1", "1:2:3",
        "1.2.3.4:0", "1.2.3.4:65535", "1.2.3.4:65536", "1.2.3.4:+5", "1.2.3",
        "1.2.3:80", "::ffff:1.2.3.4", "[::ffff:1.2.3.4]:7", "[fe80::1%lo]:1",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@127.0.0.1:5000",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@[::1]:5000",
        " aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa @host",
        "x@1.2.3.4:5", "@host", "a@b@c", "h_st-1.example:443", "x" * 254, "x" * 253,
        "0x7f.1:1", "0177.0.0.1", "[]:1", "é.example:1", b"\xff:1",
    ]],
}

for target, inputs in seeds.items():
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    for i, data in enumerate(inputs):
        with open(os.path.join(d, f"seed-{i:03}"), "wb") as f:
            f.write(data)
