"""`make run`: start every built service on 127.0.0.1 with embedded defaults, wait until each answers,
print where it listens, and stop them all cleanly on Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info

from .cli import SUBCOMMANDS, load_subcommand
from .options import PORTS

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 180.0


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    args: tuple[str, ...]
    wyoming: bool = True

    @property
    def address(self) -> str:
        return f"tcp://{HOST}:{self.port}" if self.wyoming else f"http://{HOST}:{self.port}"


def plan(personas_dir: Path, state_dir: Path) -> list[Service]:
    persona_args = ("--personas-dir", str(personas_dir), "--state-dir", str(state_dir))

    def uri(name: str) -> tuple[str, ...]:
        return ("--uri", f"tcp://{HOST}:{PORTS[name]}")

    api_services = ",".join(f"{n}=tcp://{HOST}:{PORTS[n]}" for n in ("vad", "asr", "persona", "tts"))
    return [
        Service("vad", PORTS["vad"], uri("vad")),
        Service("asr", PORTS["asr"], uri("asr")),
        Service("persona", PORTS["persona"], (*uri("persona"), *persona_args)),
        Service("tts", PORTS["tts"], (*uri("tts"), *persona_args)),
        Service(
            "api",
            PORTS["api"],
            ("--host", HOST, "--port", str(PORTS["api"]), "--services", api_services, *persona_args),
            wyoming=False,
        ),
    ]


async def wait_until_ready(service: Service, process: asyncio.subprocess.Process) -> float:
    """Poll until the service answers (describe for Wyoming, a TCP connect for HTTP)."""
    start = time.monotonic()
    while time.monotonic() - start < STARTUP_TIMEOUT:
        if process.returncode is not None:
            raise RuntimeError(f"exited with code {process.returncode}")
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            async with asyncio.timeout(2):
                if service.wyoming:
                    async with AsyncTcpClient(HOST, service.port) as client:
                        await client.write_event(Describe().event())
                        while (event := await client.read_event()) is not None:
                            if Info.is_type(event.type):
                                return time.monotonic() - start
                else:
                    _, writer = await asyncio.open_connection(HOST, service.port)
                    writer.close()
                    return time.monotonic() - start
        await asyncio.sleep(0.3)
    raise RuntimeError(f"did not answer within {STARTUP_TIMEOUT:.0f} s")


async def run_suite(personas_dir: Path, state_dir: Path, log_dir: Path) -> int:
    built = {sub.name for sub in SUBCOMMANDS if load_subcommand(sub) is not None}
    services = [s for s in plan(personas_dir, state_dir) if s.name in built]
    missing = [s.name for s in plan(personas_dir, state_dir) if s.name not in built]
    processes: dict[str, asyncio.subprocess.Process] = {}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for service in services:
            log = (log_dir / f"{service.name}.log").open("wb")
            processes[service.name] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "wyoming_persona", service.name, *service.args,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        print(f"Starting {len(services)} services (logs in {log_dir}/) ...", flush=True)
        failed = False
        for service in services:
            try:
                seconds = await wait_until_ready(service, processes[service.name])
            except RuntimeError as err:
                failed = True
                print(f"  {service.name:<8} FAILED: {err}; see {log_dir / service.name}.log", flush=True)
                continue
            print(f"  {service.name:<8} {service.address:<24} ready in {seconds:.1f} s", flush=True)
        for name in missing:
            print(f"  {name:<8} not built yet", flush=True)
        if failed:
            return 1
        if {"asr", "persona", "tts"} <= built and "talk" in built:
            print("\nTry a voice turn:")
            print("  .venv/bin/wyoming-persona talk --text 'What can you do?' --out reply.wav")
        print("\nPress Ctrl-C to stop.", flush=True)
        await stop.wait()
        return 0
    finally:
        await _stop_all(processes)


async def _stop_all(processes: dict[str, asyncio.subprocess.Process]) -> None:
    for process in processes.values():
        if process.returncode is None:
            process.terminate()
    for name, process in processes.items():
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            print(f"  {name} did not stop in 10 s; killing it", flush=True)
            process.kill()
            await process.wait()
    if processes:
        print("All services stopped.", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--personas-dir", type=Path, default=Path("config/personas"))
    parser.add_argument("--state-dir", type=Path, default=Path("state"))
    parser.add_argument("--log-dir", type=Path, default=Path(".run/logs"))
    args = parser.parse_args(argv)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(run_suite(args.personas_dir, args.state_dir, args.log_dir))


if __name__ == "__main__":
    raise SystemExit(main())
