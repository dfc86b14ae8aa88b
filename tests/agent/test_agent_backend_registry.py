"""Backends are registered by name and imported only when chosen."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from wyoming_persona.agent.backends import BACKENDS, BackendKind

# Runs in a fresh interpreter where `ollama` and `httpx` cannot be imported, as if not installed.
BLOCKED = textwrap.dedent(
    """
    import asyncio, sys

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("ollama", "httpx"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    from wyoming_persona.agent.backends import (
        BackendError, BackendKind, BackendSettings, ChatRequest, EmbeddedSettings, create_backend,
    )

    async def main(kind):
        settings = BackendSettings(kind=BackendKind(kind), embedded=EmbeddedSettings(seed=0, n_threads=2))
        try:
            backend = await create_backend(settings)
        except BackendError as err:
            print("BackendError:", err)
            return
        request = ChatRequest(({"role": "user", "content": "Say hello."},), max_tokens=8)
        text = "".join([delta.text async for delta in backend.stream(request)])
        await backend.close()
        print("reply:", bool(text.strip()), "|", *sorted(m for m in ("ollama", "httpx") if m in sys.modules))

    asyncio.run(main(sys.argv[1]))
    """
)


def run_blocked(kind: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED, kind], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def test_every_kind_but_auto_is_registered() -> None:
    assert set(BACKENDS) == set(BackendKind) - {BackendKind.AUTO}


def test_embedded_needs_neither_ollama_nor_httpx() -> None:
    assert run_blocked("embedded") == "reply: True |"


def test_a_missing_client_library_is_a_clear_error() -> None:
    out = run_blocked("ollama")
    assert out.startswith("BackendError: the ollama backend needs the 'llm' extra"), out
