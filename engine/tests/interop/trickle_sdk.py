"""Drives Livepeer's official Python SDK (`livepeer-gateway`) trickle clients against a
trickle server, for Sluice's interop tests.

    python trickle_sdk.py publish URL COUNT     # COUNT segments, each written in 3 chunks
    python trickle_sdk.py subscribe URL START   # print one JSON line per segment until EOS

Segment i holds `pattern(i)`: deterministic bytes the Rust side checks byte for byte.
"""
import asyncio
import hashlib
import json
import sys

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


async def subscribe(url: str, start: int) -> None:
    sub = TrickleSubscriber(url, start_seq=start)
    while True:
        seg = await sub.next()
        if seg is None:
            break
        reader = seg.make_reader()
        body = bytearray()
        while True:
            chunk = await reader.read()
            if not chunk:
                break
            body.extend(chunk)
        await seg.close()
        line = {"seq": seg.seq(), "len": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        print(json.dumps(line), flush=True)
    await sub.close()


def main() -> None:
    mode, url, arg = sys.argv[1], sys.argv[2], int(sys.argv[3])
    asyncio.run(publish(url, arg) if mode == "publish" else subscribe(url, arg))


if __name__ == "__main__":
    main()
