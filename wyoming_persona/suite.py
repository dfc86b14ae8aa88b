"""`make run`: start every built service on 127.0.0.1 (its metrics and side ports too) with embedded
defaults, wait until each answers, print where it listens, and stop them all cleanly on Ctrl-C.
Benchmarks and end-to-end tests start the same suite on other ports through `running_suite`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info

from .services import SERVICES, Service, wyoming_services

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 300.0


@dataclass(frozen=True)
class Planned:
    """A service of the services table with the exact flags it is started with."""

    name: str
    port: int
    args: tuple[str, ...]
    wyoming: bool = True

    @property
    def address(self) -> str:
        return f"tcp://{HOST}:{self.port}" if self.wyoming else f"http://{HOST}:{self.port}"


class SuiteError(RuntimeError):
    """A service of the suite did not come up, or stopped while the suite was running."""


@dataclass(frozen=True)
class RunningSuite:
    """The started services and their processes."""

    services: dict[str, Planned]
    processes: dict[str, asyncio.subprocess.Process]

    async def wait_for_exit(self) -> tuple[str, int]:
        """Wait until any service exits by itself; return its name and exit code."""
        waits = {asyncio.ensure_future(p.wait()): name for name, p in self.processes.items()}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        first = next(iter(done))
        return waits[first], first.result()


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


def plan(
    personas_dir: Path,
    state_dir: Path,
    ports: Mapping[str, int] | None = None,
    services: tuple[Service, ...] = SERVICES,
    started: Collection[str] | None = None,
) -> list[Planned]:
    """Every service of the table with its flags; a plain HTTP service probes all the Wyoming ones.
    A link to another service is passed only when that one is `started` too (None: all are)."""
    ports = {s.name: s.port for s in services} | dict(ports or {})
    persona_args = ("--personas-dir", str(personas_dir), "--state-dir", str(state_dir))
    probes = tuple(
        arg
        for s in wyoming_services(services)
        for arg in ("--service", f"{s.name}=tcp://{HOST}:{ports[s.name]}")
    )
    # Metrics on the table's ports, only for services on their own ports (tests and benchmarks that move
    # a service to a free port must not collide with a `make run` beside them).
    metrics = {
        s.name: s.metrics_port
        for s in wyoming_services(services)
        if s.metrics_port and ports[s.name] == s.port
    }
    probes += tuple(
        arg for name, port in metrics.items() for arg in ("--scrape", f"{name}=http://{HOST}:{port}/metrics")
    )
    planned = []
    for s in services:
        port = ports[s.name]
        if s.wyoming:
            bind: tuple[str, ...] = ("--uri", f"tcp://{HOST}:{port}")
            if s.name in metrics:
                bind += ("--metrics-host", HOST, "--metrics-port", str(metrics[s.name]))
            for flag, side_port in s.side_ports:
                bind += (flag, str(side_port if port == s.port else 0))
            for flag in s.side_hosts:
                bind += (flag, HOST)
        else:
            bind = ("--host", HOST, "--port", str(port), *probes)
        links = tuple(
            arg
            for flag, other in s.links
            if other in ports and (started is None or other in started)
            for arg in (flag, f"tcp://{HOST}:{ports[other]}")
        )
        args = (*bind, *(persona_args if s.uses_personas else ()), *s.suite_args, *links)
        planned.append(Planned(s.name, port, args, s.wyoming))
    return planned


async def wait_until_ready(service: Planned, process: asyncio.subprocess.Process) -> float:
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
    ports: Mapping[str, int] | None = None,
    names: tuple[str, ...] | None = None,
    extra_args: Mapping[str, tuple[str, ...]] | None = None,
    report: bool = False,
) -> AsyncIterator[RunningSuite]:
    """Start the named services as subprocesses, wait until all answer, stop them on exit."""
    planned = plan(personas_dir, state_dir, ports, started=names)
    services = [s for s in planned if names is None or s.name in names]
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
        yield RunningSuite({service.name: service for service in services}, processes)
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


async def run_suite(
    personas_dir: Path,
    state_dir: Path,
    log_dir: Path,
    ports: Mapping[str, int] | None = None,
    names: tuple[str, ...] | None = None,
) -> int:
    """Run the services until Ctrl-C; a service that stops by itself stops the suite with an error."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    count = len(names) if names is not None else len(SERVICES)
    print(f"Starting {count} services on {HOST} (logs in {log_dir}/) ...", flush=True)
    try:
        async with running_suite(personas_dir, state_dir, log_dir, ports, names, report=True) as suite:
            if "api" in suite.services:
                print(f"\nPersona studio: {suite.services['api'].address}/")
            print("\nTry a voice turn:")
            print("  .venv/bin/wyoming-persona talk --text 'What can you do?' --out reply.wav")
            print("\nPress Ctrl-C to stop.", flush=True)
            stopped = asyncio.ensure_future(stop.wait())
            exited = asyncio.ensure_future(suite.wait_for_exit())
            await asyncio.wait((stopped, exited), return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            exited.cancel()
            if not stop.is_set():
                name, code = exited.result()
                raise SuiteError(f"{name} stopped unexpectedly with exit code {code}{_tail(log_dir, name)}")
            print("Stopping ...", flush=True)
    except SuiteError as err:
        print(
            f"error: {err}\nStopped the other services; logs are in {log_dir}/", file=sys.stderr, flush=True
        )
        return 1
    print("All services stopped.", flush=True)
    return 0


def _tail(log_dir: Path, name: str, lines: int = 5) -> str:
    """The last lines of a service's log, indented, to show why it stopped."""
    try:
        text = (log_dir / f"{name}.log").read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "".join(f"\n    {line}" for line in text)


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
