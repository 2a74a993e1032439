"""Bus benchmark: publish and consume throughput with 1 KB and 100 KB messages.

Run: ``.venv/bin/python benches/bench_bus.py [--kafka 127.0.0.1:9092] [--count 20000]``.
Prints msgs/s and MB/s per backend and size; nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.ports import Bus, Outgoing  # noqa: E402


def bench(name: str, bus: Bus, size: int, count: int, batch: int) -> None:
    """Publish ``count`` messages of ``size`` bytes in batches, then consume them in one group."""
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    payload = b"x" * size
    messages = [
        Outgoing(key=f"indicator--{i % 1000}", value=payload, headers={"agency": "hk-govcert"})
        for i in range(batch)
    ]
    bus.publish(topic, messages[:1])  # topic creation is not part of the figure
    start = time.perf_counter()
    for _ in range(count // batch):
        bus.publish(topic, messages)
    pub_s = time.perf_counter() - start
    total = (count // batch) * batch + 1

    consumer = bus.consumer(topic, f"bench-{uuid.uuid4().hex[:8]}")
    got = 0
    start = time.perf_counter()
    deadline = start + 300
    while got < total and time.perf_counter() < deadline:
        got += len(consumer.poll(max_records=500, timeout_s=1.0))
    consumer.commit()
    con_s = time.perf_counter() - start
    consumer.close()
    mb = size * total / 1e6
    print(
        f"{name:9} {size // 1024:>4} KB x {total:>6} (batch {batch:>4}): "
        f"publish {total / pub_s:9.0f} msg/s {mb / pub_s:7.1f} MB/s | "
        f"consume {got / con_s:9.0f} msg/s {mb / con_s:7.1f} MB/s (incl. group join)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kafka", default="", help="bootstrap servers (skipped when empty)")
    parser.add_argument("--count", type=int, default=20_000, help="1 KB messages per run")
    parser.add_argument("--skip-embedded", action="store_true")
    args = parser.parse_args()
    runs = [(1024, args.count, 500), (100 * 1024, max(100, args.count // 50), 50)]
    if not args.skip_embedded:
        from backends.embedded_bus import EmbeddedBus

        with tempfile.TemporaryDirectory() as tmp:
            bus = EmbeddedBus(str(Path(tmp) / "bus.sqlite3"))
            for size, count, batch in runs:
                bench("embedded", bus, size, count, batch)
            bus.close()
    if args.kafka:
        from backends.kafka_bus import KafkaBus
        from core.settings import KafkaSettings

        kafka = KafkaBus(args.kafka, KafkaSettings(partitions=6, linger_ms=20), prefix="tb-bench-")
        for size, count, batch in runs:
            bench("kafka", kafka, size, count, batch)
        kafka.close()


if __name__ == "__main__":
    main()
