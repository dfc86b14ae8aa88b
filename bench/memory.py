"""Memory of the whole suite at idle (resident set of every service process), as `make run` starts it.

.venv/bin/python bench/memory.py
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _suite import bench_suite, machine, save

SERVICES = ("vad", "asr", "persona", "tts", "api")


async def bench() -> int:
    async with bench_suite(SERVICES) as suite:
        await suite.wait_for_log("persona", "Persona prompts ready")  # start-up work done: idle
        await asyncio.sleep(5)  # let start-up allocations settle
        rows = {}
        for child in psutil.Process().children(recursive=True):
            try:
                command = child.cmdline()
                rss = child.memory_info().rss
            except psutil.NoSuchProcess:
                continue
            name = next((arg for arg in command if arg in SERVICES), child.name())
            rows[name] = rows.get(name, 0) + rss
    total = sum(rows.values())
    print(f"bench/memory on {machine()}: resident memory at idle")
    for name in SERVICES:
        if name in rows:
            print(f"  {name:<8} {rows[name] / 2**20:7.0f} MiB")
    print(f"  {'total':<8} {total / 2**20:7.0f} MiB")
    save(
        "memory",
        {"rss_mib": {k: round(v / 2**20) for k, v in rows.items()}, "total_mib": round(total / 2**20)},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(bench()))
