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

    A per-key lock with a second look after locking means concurrent requests for a voice load it
    once. `loads` counts real loads so tests and the bench can show that switching costs none.
    """

    def __init__(self, max_voices: int = 4, worker_factory: Callable[[VoiceFile], PiperWorker] = PiperWorker):
        if max_voices < 1:
            raise ValueError("max_voices must be at least 1")
        self.max_voices = max_voices
        self._worker_factory = worker_factory
        self._workers: OrderedDict[PoolKey, PiperWorker] = OrderedDict()
        self._locks: dict[PoolKey, asyncio.Lock] = {}
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
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            worker = self._hit(key)
            if worker is not None:
                return worker
            worker = self._worker_factory(voice)
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                await worker.load()
            except BaseException:
                worker.close()
                raise
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
