"""Export time and memory on the embedded backends (issue #19): ``plain`` and ``rpz``.

Loads N indicator records (written as the correlator writes them: merged, their
per-reader views planned, scored and assembled by ``correlate/views.py``; 60 % public
IPv4, 30 % domains, 10 % SHA-256; one to three sources from GD/HK/MO, some
AMBER; ``view_records.py``, shared with ``bench_api_scale.py``) straight into a
fresh embedded store, then exports as ``hk-govcert`` through ``api.exports.render``
— the code the route and the CLI run — into a sink that only counts bytes. For
each size it prints wall time, rows/s and the peak of Python allocations during
the export (tracemalloc, in a second run so the timing is not slowed by tracing).
Memory must stay flat as N grows (pages of 500 records, a 1 MiB spool; the rest
of the body goes to a temporary file).

    .venv/bin/python benches/bench_exports.py [--sizes 10000,100000] [--million]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from view_records import READER, T0, load, register

from api.exports import export_request, render
from core.allowlist import AllowList
from core.clock import FakeClock
from core.policy import reader_for
from core.settings import Settings
from threatbay.bootstrap import Services, build


class Sink:
    """A binary file that only counts what is written."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        return len(data)


def export_once(services: Services, fmt: str, trace: bool) -> tuple[float, float, int, int, int]:
    """(wall s, CPU s, rows, bytes, peak traced bytes) of one export as the reader.

    CPU seconds (this process: the export and the embedded store's SQLite run in it)
    are the figure to compare while other work shares the machine.
    """
    types = ("domain-name",) if fmt == "plain" else ()
    req = export_request(fmt, types=types)
    sink = Sink()
    if trace:
        tracemalloc.start()
    start, cpu = time.perf_counter(), time.process_time()
    _, result = render(services.store, services.sharing, reader_for(READER), AllowList.of(()), req,
                       services.clock.now(), lambda digest: 1, sink)  # type: ignore[arg-type]  # fmt: skip
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = 0
    if trace:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return seconds, cpu, result.count, sink.bytes, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--million", action="store_true", help="add 1,000,000 records")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] + ([1_000_000] if args.million else [])
    print(f"machine: {platform.node()} {platform.machine()} Python {platform.python_version()}, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        services = build(Settings(data_dir=Path(tmp)), clock=FakeClock(T0 + timedelta(days=1)))
        register(services)
        loaded = 0
        try:
            print(f"{'records':>9} {'format':>6} {'rows':>8} {'MB out':>7} {'wall s':>7} "
                  f"{'CPU s':>7} {'rows/CPU s':>10} {'peak MiB':>8}")  # fmt: skip
            for size in sorted(sizes):
                t = time.perf_counter()
                load(services, loaded, size)
                print(f"  (loaded {size - loaded} records in {time.perf_counter() - t:.1f}s)")
                loaded = size
                for fmt in ("plain", "rpz"):
                    seconds, cpu, rows, out, _ = export_once(services, fmt, trace=False)
                    peak = export_once(services, fmt, trace=True)[4]
                    print(f"{size:>9} {fmt:>6} {rows:>8} {out / 1e6:>7.1f} {seconds:>7.1f} "
                          f"{cpu:>7.1f} {rows / cpu:>10,.0f} {peak / 2**20:>8.1f}",
                          flush=True)  # fmt: skip
        finally:
            services.close()


if __name__ == "__main__":
    main()
