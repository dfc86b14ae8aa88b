"""`make run`: start every built service on 127.0.0.1 with embedded defaults, wait until each answers,
print where it listens, and stop them all cleanly on Ctrl-C. Benchmarks and end-to-end tests start
the same suite on other ports through `running_suite`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info

from .cli import SUBCOMMANDS, load_subcommand
from .options import PORTS

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 300.0
SERVICE_ORDER = ("vad", "asr", "persona", "tts", "api")
ASR_ENDPOINTING_MS = 500
"""Silence that ends an utterance: longer than a spoken comma, short enough to answer quickly."""


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    args: tuple[str, ...]
    wyoming: bool = True

    @property
    def address(self) -> str:
        return f"tcp://{HOST}:{self.port}" if self.wyoming else f"http://{HOST}:{self.port}"


class SuiteError(RuntimeError):
    """A service of the suite did not come up."""


def free_ports(names: tuple[str, ...]) -> dict[str, int]:
    """Ports the OS says are free right now (for tests and benchmarks running beside `make run`)."""
    sockets = []
    try:
        for _ in names:
            sock = socket.socket()
            sock.bind((HOST, 0))
            sockets.append(sock)
        return {name: sock.getsockname()[1] for name, sock in zip(names, sockets, strict=True)}
    finally:
        for sock in sockets:
            sock.close()


def plan(personas_dir: Path, state_dir: Path, ports: Mapping[str, int] = PORTS) -> list[Service]:
    persona_args = ("--personas-dir", str(personas_dir), "--state-dir", str(state_dir))

    def uri(name: str) -> tuple[str, ...]:
        return ("--uri", f"tcp://{HOST}:{ports[name]}")

    probes = [
        arg for n in ("vad", "asr", "persona", "tts") for arg in ("--service", f"{n}=tcp://{HOST}:{ports[n]}")
    ]
    api_args = ("--host", HOST, "--port", str(ports["api"]), *persona_args, *probes)
    return [
        Service("vad", ports["vad"], uri("vad")),
        # Our own clients (talk, satellites without a VAD) let the ASR end the utterance itself.
        Service("asr", ports["asr"], (*uri("asr"), "--endpointing-ms", str(ASR_ENDPOINTING_MS))),
        Service("persona", ports["persona"], (*uri("persona"), *persona_args)),
        Service("tts", ports["tts"], (*uri("tts"), *persona_args)),
        Service("api", ports["api"], api_args, wyoming=False),
    ]


def built_services() -> set[str]:
    return {sub.name for sub in SUBCOMMANDS if load_subcommand(sub) is not None}


async def wait_until_ready(service: Service, process: asyncio.subprocess.Process) -> float:
    """Poll until the service answers (describe for Wyoming, a TCP connect for HTTP)."""
    start = time.monotonic()
    while time.monotonic() - start < STARTUP_TIMEOUT:
        if process.returncode is not None:
            raise SuiteError(f"{service.name} exited with code {process.returncode}")
        with contextlib.suppress(OSError, TimeoutError):
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
    raise SuiteError(f"{service.name} did not answer within {STARTUP_TIMEOUT:.0f} s")


@contextlib.asynccontextmanager
async def running_suite(
    personas_dir: Path,
    state_dir: Path,
    log_dir: Path,
    ports: Mapping[str, int] = PORTS,
    names: tuple[str, ...] = SERVICE_ORDER,
    extra_args: Mapping[str, tuple[str, ...]] | None = None,
    report: bool = False,
) -> AsyncIterator[dict[str, Service]]:
    """Start the named services as subprocesses, wait until all answer, stop them on exit."""
    services = [s for s in plan(personas_dir, state_dir, ports) if s.name in names]
    processes: dict[str, asyncio.subprocess.Process] = {}
    try:
        for service in services:
            log = (log_dir / f"{service.name}.log").open("wb")
            args = (*service.args, *(extra_args or {}).get(service.name, ()))
            processes[service.name] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "wyoming_persona", service.name, *args,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
            log.close()
        for service in services:
            seconds = await wait_until_ready(service, processes[service.name])
            if report:
                print(f"  {service.name:<8} {service.address:<24} ready in {seconds:.1f} s", flush=True)
        yield {service.name: service for service in services}
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
            print(f"  {name} did not stop in 10 s; killing it", file=sys.stderr, flush=True)
            process.kill()
            await process.wait()


async def run_suite(personas_dir: Path, state_dir: Path, log_dir: Path) -> int:
    built = built_services()
    names = tuple(name for name in SERVICE_ORDER if name in built)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"Starting {len(names)} services on {HOST} (logs in {log_dir}/) ...", flush=True)
    try:
        async with running_suite(personas_dir, state_dir, log_dir, names=names, report=True):
            for name in SERVICE_ORDER:
                if name not in built:
                    print(f"  {name:<8} not built yet", flush=True)
            if {"asr", "persona", "tts", "talk"} <= built:
                print("\nTry a voice turn:")
                print("  .venv/bin/wyoming-persona talk --text 'What can you do?' --out reply.wav")
            print("\nPress Ctrl-C to stop.", flush=True)
            await stop.wait()
            print("Stopping ...", flush=True)
    except SuiteError as err:
        print(f"error: {err}; see the logs in {log_dir}/", file=sys.stderr)
        return 1
    print("All services stopped.", flush=True)
    return 0


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
