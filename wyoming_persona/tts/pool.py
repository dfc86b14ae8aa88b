"""A small LRU pool of loaded Piper voices, so switching personas never reloads a model."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable

from .voices import VoiceFile
from .worker import PiperWorker

_LOGGER = logging.getLogger(__name__)

PoolKey = tuple[str, str]


class VoicePool:
    """Loaded voices keyed by model and config file; personas on the same model share one worker.

    Concurrent requests for a voice share one load. `loads` counts real loads so tests and the bench
    can show that switching costs none.
    """

    def __init__(self, max_voices: int = 4, worker_factory: Callable[[VoiceFile], PiperWorker] = PiperWorker):
        if max_voices < 1:
            raise ValueError("max_voices must be at least 1")
        self.max_voices = max_voices
        self._worker_factory = worker_factory
        self._workers: OrderedDict[PoolKey, PiperWorker] = OrderedDict()
        self._loading: dict[PoolKey, asyncio.Task[PiperWorker]] = {}
        self.loads = 0
        self.evictions = 0

    @staticmethod
    def key(voice: VoiceFile) -> PoolKey:
        return (str(voice.model_path), str(voice.config_path))

    def loaded(self) -> list[str]:
        """Names of the loaded voices, least recently used first."""
        return [worker.voice.name for worker in self._workers.values()]

    async def get(self, voice: VoiceFile) -> PiperWorker:
        key = self.key(voice)
        worker = self._hit(key)
        if worker is not None:
            return worker
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.create_task(self._load(key, voice), name=f"load-voice-{voice.name}")
            self._loading[key] = loading
            loading.add_done_callback(_retrieved)  # every waiter may have gone: its error is theirs
        # Shielded: a request that goes away mid-load does not throw the load away (its thread runs on
        # regardless); the voice lands in the pool for the next request.
        return await asyncio.shield(loading)

    async def _load(self, key: PoolKey, voice: VoiceFile) -> PiperWorker:
        worker = self._worker_factory(voice)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await worker.load()
        except BaseException:
            worker.close()
            raise
        finally:
            del self._loading[key]
        self.loads += 1
        _LOGGER.info("Loaded voice %s in %.2f s", voice.name, loop.time() - started)
        self._workers[key] = worker
        self._evict()
        return worker

    def _hit(self, key: PoolKey) -> PiperWorker | None:
        worker = self._workers.get(key)
        if worker is not None:
            self._workers.move_to_end(key)
        return worker

    def _evict(self) -> None:
        while len(self._workers) > self.max_voices:
            _, worker = self._workers.popitem(last=False)
            self.evictions += 1
            _LOGGER.info("Unloaded voice %s (pool holds %d)", worker.voice.name, self.max_voices)
            # Not closed: a response may still be using it; its thread exits once it is unreferenced.

    def close(self) -> None:
        for worker in self._workers.values():
            worker.close()
        self._workers.clear()


def _retrieved(task: asyncio.Task[PiperWorker]) -> None:
    if not task.cancelled():
        task.exception()
