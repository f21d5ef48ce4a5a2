#!/usr/bin/env python3
"""A connection flood from one address, in a QUIC stack we did not write (aioquic).

Opens COUNT QUIC connections to a `qp2p listen` at HOST:PORT, all from HOST's side of
loopback, with ALPN qp2p/1 and a throwaway self-signed client certificate (the
listener requires one, and admits any unless --allow is given), and holds the ones it
gets open without ever opening a stream, for HOLD seconds from the start. Then it
closes them and exits by itself: the flood is bounded in count and in time.

Prints JSON lines on stdout:
  {"event": "ready", "opened": N, "refused": N, "failed": N}   every attempt answered
  {"event": "done", "opened": N, "closed_by_peer": N, ...}     before exiting

With --reconnect, a connection the listener closes is opened again (up to COUNT
reconnections in all), as a flood that fights back would.

Used by tests/suite/flood.rs; `pip install aioquic` brings aioquic and cryptography.
"""

import argparse
import asyncio
import datetime
import json
import ssl
import sys
import time

from aioquic.asyncio.client import connect
from aioquic.quic.configuration import QuicConfiguration
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MAX_COUNT = 2000
MAX_HOLD = 60.0
HANDSHAKE_TIMEOUT = 5.0


def throwaway_identity():
    """A self-signed P-256 certificate and its key, made for this run only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flood")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert, key


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


async def main(args):
    cert, key = throwaway_identity()
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=["qp2p/1"],
        server_name="qp2p",
        verify_mode=ssl.CERT_NONE,
        idle_timeout=args.hold + 10,
    )
    config.certificate = cert
    config.private_key = key

    start = time.monotonic()
    deadline = start + args.hold
    counts = {"opened": 0, "refused": 0, "failed": 0, "closed_by_peer": 0, "reopened": 0}
    reopen_budget = [args.count if args.reconnect else 0]
    handshakes = asyncio.Semaphore(args.concurrency)
    attempted = [0]
    all_attempted = asyncio.Event()

    def attempt_done():
        attempted[0] += 1
        if attempted[0] == args.count:
            all_attempted.set()

    async def hold_one(first):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                async with handshakes:
                    opening = connect(
                        args.host, args.port, configuration=config, wait_connected=True
                    )
                    client = await asyncio.wait_for(
                        opening.__aenter__(), min(HANDSHAKE_TIMEOUT, left)
                    )
            except ConnectionError:
                counts["refused"] += 1
                if first:
                    attempt_done()
                return
            except Exception:
                counts["failed"] += 1
                if first:
                    attempt_done()
                return
            counts["opened"] += 1
            if first:
                attempt_done()
                first = False
            closed = asyncio.ensure_future(client.wait_closed())
            left = max(0.0, deadline - time.monotonic())
            done, _ = await asyncio.wait({closed}, timeout=left)
            if not done:
                closed.cancel()
            try:
                await asyncio.wait_for(opening.__aexit__(None, None, None), 1.0)
            except Exception:
                pass
            if not done:
                return
            counts["closed_by_peer"] += 1
            if reopen_budget[0] <= 0:
                return
            reopen_budget[0] -= 1
            counts["reopened"] += 1

    tasks = [asyncio.ensure_future(hold_one(True)) for _ in range(args.count)]
    if args.count == 0:
        all_attempted.set()
    left = max(0.0, deadline - time.monotonic())
    try:
        await asyncio.wait_for(all_attempted.wait(), left)
    except asyncio.TimeoutError:
        pass
    emit(
        "ready",
        opened=counts["opened"],
        refused=counts["refused"],
        failed=counts["failed"],
        seconds=round(time.monotonic() - start, 3),
    )
    await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()) + 3)
    for task in tasks:
        task.cancel()
    emit("done", **counts)


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--count", type=int, default=300)
    p.add_argument("--hold", type=float, default=20.0, help="seconds, from the start")
    p.add_argument("--concurrency", type=int, default=64, help="handshakes at once")
    p.add_argument("--reconnect", action="store_true")
    args = p.parse_args()
    if not 0 <= args.count <= MAX_COUNT:
        p.error(f"--count must be between 0 and {MAX_COUNT}")
    if not 0 < args.hold <= MAX_HOLD:
        p.error(f"--hold must be more than 0 and at most {MAX_HOLD}")
    if args.concurrency < 1:
        p.error("--concurrency must be at least 1")
    return args


if __name__ == "__main__":
    args = parse()
    try:
        # The whole run is bounded even if something above hangs.
        asyncio.run(asyncio.wait_for(main(args), args.hold + 15))
    except asyncio.TimeoutError:
        print("flood.py: gave up at its time bound", file=sys.stderr)
        sys.exit(2)
