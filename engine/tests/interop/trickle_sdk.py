"""Drives Livepeer's Python trickle clients against a trickle server, for Sluice's interop
tests: the official SDK (`livepeer-gateway`) and `pytrickle` (its client modules only,
loaded without the package's heavy media dependencies).

    python trickle_sdk.py publish URL COUNT        # SDK: COUNT segments, 3 chunks each
    python trickle_sdk.py subscribe URL START      # SDK: one JSON line per segment until EOS
    python trickle_sdk.py pt-publish URL COUNT MS  # pytrickle: MS between segments (0: none)
    python trickle_sdk.py pt-subscribe URL START   # pytrickle subscriber

Segment i holds `pattern(i)`: deterministic bytes the Rust side checks byte for byte.
"""
import asyncio
import hashlib
import json
import os
import sys
import types

from livepeer_gateway.trickle_publisher import TricklePublisher
from livepeer_gateway.trickle_subscriber import TrickleSubscriber


def pattern(i: int) -> bytes:
    n = 40_000 + 777 * i
    return bytes(((i * 31 + k * 7) % 251) for k in range(n))


async def publish(url: str, count: int) -> None:
    pub = TricklePublisher(url, "video/mp2t")
    for i in range(count):
        seg = await pub.next()
        data = pattern(i)
        third = len(data) // 3
        for part in (data[:third], data[third : 2 * third], data[2 * third :]):
            await seg.write(part)
            await asyncio.sleep(0.02)
        await seg.close()
    await asyncio.sleep(0.5)
    await pub.close()


def emit(seq: int, body: bytes) -> None:
    """One line per received segment: its index, size and SHA-256."""
    print(json.dumps({"seq": seq, "len": len(body), "sha256": hashlib.sha256(body).hexdigest()}), flush=True)


async def drain(read) -> bytes:
    """Reads a segment to its end with `read()` (None or b"" at the end)."""
    body = bytearray()
    while True:
        chunk = await read()
        if not chunk:
            return bytes(body)
        body.extend(chunk)


async def subscribe(url: str, start: int) -> None:
    sub = TrickleSubscriber(url, start_seq=start)
    while True:
        seg = await sub.next()
        if seg is None:
            break
        body = await drain(seg.make_reader().read)
        await seg.close()
        emit(seg.seq(), body)
    await sub.close()


def pytrickle_modules():
    """pytrickle's publisher and subscriber need only aiohttp; its __init__ pulls in torch
    and OpenCV. Load the two modules under a bare package instead."""
    import importlib.util

    spec = importlib.util.find_spec("pytrickle")
    pkg = types.ModuleType("pytrickle")
    pkg.__path__ = [os.path.dirname(spec.origin)]
    sys.modules["pytrickle"] = pkg
    from pytrickle.publisher import TricklePublisher as PtPublisher
    from pytrickle.subscriber import TrickleSubscriber as PtSubscriber

    return PtPublisher, PtSubscriber


async def pt_publish(url: str, count: int, pause_ms: int = 0) -> None:
    publisher_cls, _ = pytrickle_modules()
    pub = publisher_cls(url, "video/mp2t")
    await pub.start()
    for i in range(count):
        seg = await pub.next()
        data = pattern(i)
        half = len(data) // 2
        await seg.write(data[:half])
        await seg.write(data[half:])
        await seg.close()
        # With no pause, pytrickle's next() runs before its background preconnect has
        # moved the index on, so several segments go out as POSTs to one seq.
        await asyncio.sleep(pause_ms / 1000)
    await asyncio.sleep(0.5)
    await pub.close()


async def pt_subscribe(url: str, start: int) -> None:
    _, subscriber_cls = pytrickle_modules()
    sub = subscriber_cls(url, start_seq=start)
    await sub.start()
    while True:
        seg = await sub.next()
        if seg is None or seg.eos():
            break
        body = await drain(seg.read)
        await seg.close()
        emit(seg.seq(), body)
    await sub.close()


def main() -> None:
    mode, url, args = sys.argv[1], sys.argv[2], [int(a) for a in sys.argv[3:]]
    run = {"publish": publish, "subscribe": subscribe, "pt-publish": pt_publish, "pt-subscribe": pt_subscribe}[mode]
    asyncio.run(run(url, *args))


if __name__ == "__main__":
    main()
