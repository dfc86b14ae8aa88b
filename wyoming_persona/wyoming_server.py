"""What every Wyoming server here shares: strict framing, describe/ping, one error boundary, serving.

The `wyoming` library's reader turns a malformed frame into a silent disconnect and its stdio server
bypasses the handler's run loop, so framing and serving are done here once for all services.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
import logging
import os
import signal
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from wyoming.error import Error
from wyoming.event import Event, async_get_stdin, async_get_stdout, async_write_event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler

from .service_metrics import ConnectionMeter, MetricsOptions, Outcome, ServiceMetrics, start_exporter

_LOGGER = logging.getLogger(__name__)
_CONNECTION_IDS = itertools.count(1)


@dataclass(frozen=True)
class FrameLimits:
    """Caps on one incoming frame; anything larger is refused before it is read."""

    max_header_bytes: int = 64 * 1024
    max_data_bytes: int = 256 * 1024
    max_payload_bytes: int = 1024 * 1024


class FrameError(Exception):
    """A frame that breaks the Wyoming framing; the connection cannot continue after it."""

    def __init__(self, text: str, code: str = "bad-frame") -> None:
        super().__init__(text)
        self.text = text
        self.code = code


class ClientError(Exception):
    """The client asked for something invalid; it gets an `error` event and the connection stays."""

    def __init__(self, text: str, code: str = "bad-request") -> None:
        super().__init__(text)
        self.text = text
        self.code = code


async def read_frame(reader: asyncio.StreamReader, limits: FrameLimits) -> Event | None:
    """Read one event; None when the peer closed the connection (also mid-frame)."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as err:
        raise FrameError(f"header line longer than {limits.max_header_bytes} bytes") from err
    if len(line) > limits.max_header_bytes:
        raise FrameError(f"header line longer than {limits.max_header_bytes} bytes")
    try:
        header = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FrameError(f"header is not JSON: {err}") from err
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise FrameError("header must be a JSON object with a string 'type'")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise FrameError("'data' must be a JSON object")
    data_length = _length(header, "data_length", limits.max_data_bytes)
    payload_length = _length(header, "payload_length", limits.max_payload_bytes)
    try:
        if data_length:
            extra = json.loads(await reader.readexactly(data_length))
            if not isinstance(extra, dict):
                raise FrameError("event data must be a JSON object")
            data.update(extra)
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        return None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FrameError(f"event data is not JSON: {err}") from err
    return Event(type=header["type"], data=data, payload=payload)


def _length(header: dict, key: str, cap: int) -> int:
    value = header.get(key) or 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FrameError(f"{key} must be a non-negative integer")
    if value > cap:
        raise FrameError(f"{key} {value} exceeds the limit of {cap} bytes", code="too-large")
    return value


class WyomingService(AsyncEventHandler):
    """One connection: answers describe and ping itself, hands other events to `handle_event`.

    `handle_event` raises ClientError for bad requests (the client gets an `error` event and the
    connection stays open). Any other exception is logged once here, reported as `error`, and
    the connection is closed; the server itself keeps running.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        info: Callable[[], Info],
        limits: FrameLimits = FrameLimits(),
    ) -> None:
        super().__init__(reader, writer)
        self.info = info
        self.limits = limits
        self.connection_id = next(_CONNECTION_IDS)
        self.meter = ConnectionMeter()
        """Counts and times events; `ServiceServer` gives it the server's metrics."""
        self.log = logging.LoggerAdapter(
            logging.getLogger(type(self).__module__), {"connection": self.connection_id}
        )

    async def run(self) -> None:
        self._is_running = True
        self.meter.opened()
        try:
            while self._is_running:
                try:
                    event = await read_frame(self.reader, self.limits)
                except FrameError as err:
                    self.log.warning("Connection %s: closing: %s", self.connection_id, err.text)
                    await self.send_error(err.text, err.code)
                    break
                if event is None or not await self._dispatch(event):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            self.log.debug("Connection %s: client went away", self.connection_id)
        finally:
            self.meter.closed()
            await self.disconnect()
            with contextlib.suppress(ConnectionError, RuntimeError):
                self.writer.close()

    async def _dispatch(self, event: Event) -> bool:
        started = time.perf_counter()
        self.meter.received(event.type)
        outcome = Outcome.ABORTED
        try:
            if Describe.is_type(event.type):
                await self.write_event(self.info().event())
                outcome = Outcome.OK
                return True
            if Ping.is_type(event.type):
                await self.write_event(Pong(text=Ping.from_event(event).text).event())
                outcome = Outcome.OK
                return True
            try:
                keep_open = await self.handle_event(event)
                outcome = Outcome.OK
                return keep_open
            except ClientError as err:
                outcome = Outcome.CLIENT_ERROR
                self.log.warning("Connection %s: %s", self.connection_id, err.text)
                await self.send_error(err.text, err.code)
                return True
            except ConnectionError:
                raise
            except Exception as err:  # the one per-connection boundary
                outcome = Outcome.INTERNAL_ERROR
                self.log.exception("Connection %s: failed on %s", self.connection_id, event.type)
                await self.send_error(f"internal error while handling {event.type}: {err}", "internal")
                return False
        finally:
            self.meter.handled(event.type, outcome, time.perf_counter() - started)

    async def write_event(self, event: Event) -> None:
        _ensure_open(self.writer)
        await super().write_event(event)
        self.meter.sent(event.type)

    def unexpected(self, event: Event) -> ClientError:
        """The error for an event type this service does not handle."""
        return ClientError(f"unexpected event type {event.type!r} for this service", "unexpected")

    async def send_error(self, text: str, code: str | None = None) -> None:
        self.meter.error_sent(code)
        with contextlib.suppress(ConnectionError, RuntimeError):
            _ensure_open(self.writer)
            await async_write_event(Error(text=text, code=code).event(), self.writer)


def _ensure_open(writer: asyncio.StreamWriter) -> None:
    """ConnectionResetError once the connection is closing or lost.

    On Python 3.12+ asyncio's `writelines()`, which wyoming writes with, raises TypeError on a lost
    connection (CPython gh-136234; 3.11 raised ConnectionResetError from `drain()`).
    """
    if writer.transport.is_closing():
        raise ConnectionResetError("connection lost")


HandlerFactory = Callable[[asyncio.StreamReader, asyncio.StreamWriter], WyomingService]


class SocketPathError(OSError):
    """A unix:// path that is taken by a live server or by something that is not a socket."""


async def bind_unix_socket(path: Path, probe_timeout: float = 2.0) -> socket.socket:
    """A unix socket bound at `path`, replacing a stale socket file that nobody listens on.

    A killed server leaves its socket file behind. asyncio's own binding removes any socket file,
    even one a running server listens on; here a live socket or a non-socket file is refused.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(str(path))
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise
            await _remove_stale_socket(path, probe_timeout)
            sock.bind(str(path))
    except BaseException:
        sock.close()
        raise
    return sock


async def _remove_stale_socket(path: Path, probe_timeout: float) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SocketPathError(errno.EEXIST, f"{path} exists and is not a socket; not replacing it")
    try:
        async with asyncio.timeout(probe_timeout):
            _, writer = await asyncio.open_unix_connection(str(path))
    except ConnectionRefusedError:
        _LOGGER.info("Removing stale socket %s (nothing listens on it)", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except FileNotFoundError:
        return
    except TimeoutError:
        pass  # a listener too busy to accept is still a listener
    else:
        writer.close()
    raise SocketPathError(errno.EADDRINUSE, f"another server is listening on {path}")


class ServiceServer:
    """Serves one handler per connection over tcp://, unix:// or stdio://, tracking every task."""

    def __init__(
        self, uri: str, handler_factory: HandlerFactory, metrics: ServiceMetrics | None = None
    ) -> None:
        self.uri = uri
        self.handler_factory = handler_factory
        self.metrics = metrics or ServiceMetrics()
        self._parsed = urlparse(uri)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._socket_file: tuple[Path, int, int] | None = None
        if self._parsed.scheme not in ("tcp", "unix", "stdio"):
            raise ValueError(f"unsupported URI {uri!r}: use tcp://HOST:PORT, unix://PATH or stdio://")
        if self._parsed.scheme == "tcp" and (not self._parsed.hostname or self._parsed.port is None):
            raise ValueError(f"a tcp:// URI needs a host and a port: {uri!r}")
        if self._parsed.scheme == "unix" and not uri[len("unix://") :]:
            raise ValueError(f"a unix:// URI needs a path: {uri!r}")

    @property
    def port(self) -> int | None:
        """The bound TCP port (useful with port 0)."""
        if self._parsed.scheme != "tcp" or self._server is None or not self._server.sockets:
            return None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        scheme = self._parsed.scheme
        if scheme == "tcp":
            self._server = await asyncio.start_server(self._accept, self._parsed.hostname, self._parsed.port)
        elif scheme == "unix":
            path = Path(self.uri[len("unix://") :])  # urlparse would take a relative path for a host
            sock = await bind_unix_socket(path)
            st = os.stat(path)
            self._socket_file = (path, st.st_dev, st.st_ino)
            self._server = await asyncio.start_unix_server(self._accept, sock=sock)

    async def serve_forever(self) -> None:
        if self._parsed.scheme == "stdio":
            reader = await async_get_stdin()
            writer = await async_get_stdout()
            await self._handler(reader, writer).run()
            return
        if self._server is None:
            await self.start()
        if self._server is not None:
            await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        self._remove_socket_file()

    def _remove_socket_file(self) -> None:
        """Unlink our unix socket file, unless another server has replaced it meanwhile."""
        if self._socket_file is None:
            return
        path, dev, ino = self._socket_file
        self._socket_file = None
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) == (dev, ino):
                path.unlink()

    def _handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> WyomingService:
        handler = self.handler_factory(reader, writer)
        handler.meter = ConnectionMeter(self.metrics)
        return handler

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._handler(reader, writer).run()
        except asyncio.CancelledError:
            # close() cancelled this connection. Ending normally matters: Python 3.11's stream callback
            # calls task.exception() on a cancelled task and logs a spurious "Exception in callback".
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)


async def serve(
    uri: str,
    handler_factory: HandlerFactory,
    zeroconf_name: str | None = None,
    metrics: MetricsOptions | None = None,
    service_metrics: ServiceMetrics | None = None,
) -> None:
    """Run a service until SIGTERM/SIGINT; register zeroconf discovery and serve /metrics if asked.
    `service_metrics`: the server's metrics when the service counts more of its own in their registry."""
    if service_metrics is None:
        service_metrics = ServiceMetrics(metrics.service if metrics else "wyoming")
    server = ServiceServer(uri, handler_factory, service_metrics)
    await server.start()
    exporter = None
    if metrics is not None and metrics.port:
        exporter = await start_exporter(server.metrics, metrics.host, metrics.port)
    if zeroconf_name:
        await register_zeroconf(server, zeroconf_name)
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, main_task.cancel)
    if server.port is not None:
        uri = f"tcp://{urlparse(uri).hostname}:{server.port}"
    _LOGGER.info("Ready on %s", uri)
    try:
        await server.serve_forever()
    except asyncio.CancelledError:
        _LOGGER.info("Stopping")
    finally:
        await server.close()
        if exporter is not None:
            await exporter.cleanup()


async def register_zeroconf(server: ServiceServer, name: str) -> None:
    parsed = urlparse(server.uri)
    if parsed.scheme != "tcp":
        raise ValueError("zeroconf needs a tcp:// URI")
    from wyoming.zeroconf import HomeAssistantZeroconf

    host = parsed.hostname if parsed.hostname not in ("0.0.0.0", "::") else None
    zeroconf = HomeAssistantZeroconf(port=server.port or parsed.port, name=name, host=host)
    await zeroconf.register_server()
    _LOGGER.info("Zeroconf discovery enabled as %s", name)
