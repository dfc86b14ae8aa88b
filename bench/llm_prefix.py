"""First-token latency of the embedded LLM with the prompt cache on and off.

    .venv/bin/python bench/llm_prefix.py [--rounds 3] [--models smollm2,qwen-0.5b,qwen-1.5b]

Per model, two backends (each its own llama.cpp model, n_threads 2, n_ctx 2048) take the same
requests, alternating which goes first each round. Each round, as chat.py builds them (system
prompt, example turns, history, question):
  first question   the model restarted (its KV state dropped; the cache keeps what was warmed)
  follow-up turn   the same conversation's next question, right after the first
  new conversation the same persona, a new conversation
  persona switch   a new conversation with another persona
Only the first question's reply is generated in full (it becomes the follow-up's history); the other
streams stop at their first piece. The cache is warmed for both personas before the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _suite import machine, median_ms, save

from wyoming_persona.agent.backends import ChatRequest, EmbeddedSettings
from wyoming_persona.agent.backends.embedded import LlamaCppChatBackend
from wyoming_persona.agent.backends.prompt_cache import PromptCache
from wyoming_persona.agent.cli import opening_requests
from wyoming_persona.personas import Persona, PersonaManager, persona_messages

PERSONAS_DIR = Path(__file__).resolve().parents[1] / "config" / "personas"
MODELS = ("smollm2", "qwen-0.5b", "qwen-1.5b")
CASES = ("first question", "follow-up turn", "new conversation", "persona switch")
QUESTIONS = (
    ("What time is it?", "And what about tomorrow?", "Can you tell me a joke?", "Could you bring me tea?"),
    (
        "Is it going to rain?",
        "Should I take an umbrella?",
        "What should I cook tonight?",
        "Where are my keys?",
    ),
    ("What can you do?", "Tell me more.", "How do I stay fit?", "Please dim the lights."),
)
MAX_TOKENS = 24


def _request(persona: Persona, *turns: str) -> ChatRequest:
    roles = ("user", "assistant")
    history = [{"role": roles[i % 2], "content": text} for i, text in enumerate(turns)]
    return ChatRequest(
        messages=(*persona_messages(persona), *history), temperature=0.0, max_tokens=MAX_TOKENS
    )


async def _first_piece(backend: LlamaCppChatBackend, request: ChatRequest, whole: bool) -> tuple[float, str]:
    start = time.perf_counter()
    stream = backend.stream(request)
    try:
        delta = await anext(stream)
        elapsed = time.perf_counter() - start
        text = delta.text
        if whole:
            text += "".join([more.text async for more in stream])
    finally:
        await stream.aclose()
    return elapsed, text


async def _round(backend: LlamaCppChatBackend, a: Persona, b: Persona, questions: tuple[str, ...]) -> dict:
    q1, q2, q3, q4 = questions
    await asyncio.wrap_future(backend._executor.submit(backend._llama.reset))  # a restart, model loaded
    first, reply = await _first_piece(backend, _request(a, q1), whole=True)
    follow_up, _ = await _first_piece(backend, _request(a, q1, reply.strip(), q2), whole=False)
    new, _ = await _first_piece(backend, _request(a, q3), whole=False)
    switch, _ = await _first_piece(backend, _request(b, q4), whole=False)
    return dict(zip(CASES, (first, follow_up, new, switch), strict=True))


async def bench_model(name: str, rounds: int, a: Persona, b: Persona) -> dict:
    backends: dict[str, LlamaCppChatBackend] = {}
    for mode, mib in (("on", 128.0), ("off", 0.0)):
        settings = EmbeddedSettings(model=name, n_ctx=2048, n_threads=2, seed=0, prompt_cache_mib=mib)
        backends[mode] = await asyncio.to_thread(LlamaCppChatBackend.load, settings)
    try:
        start = time.perf_counter()
        await backends["on"].warm(opening_requests([a, b]))
        warm_s = time.perf_counter() - start
        cache = PromptCache.of(backends["on"]._llama, 128.0)
        prefixes = [len(key) for key in cache.prefixes()]
        size = cache.stats.size_bytes / 2**20
        print(f"{name}: warmed {prefixes} prefix tokens in {warm_s:.1f} s, {size:.1f} MiB")
        samples: dict[str, dict[str, list[float]]] = {mode: {case: [] for case in CASES} for mode in backends}
        for index in range(rounds):
            order = ("on", "off") if index % 2 == 0 else ("off", "on")
            for mode in order:
                result = await _round(backends[mode], a, b, QUESTIONS[index % len(QUESTIONS)])
                for case, seconds in result.items():
                    samples[mode][case].append(seconds)
                shown = "  ".join(f"{case} {seconds * 1000:6.0f}" for case, seconds in result.items())
                print(f"  round {index + 1} cache {mode:<3} {shown} ms", flush=True)
        return {
            "warm_seconds": round(warm_s, 2),
            "prefix_tokens": prefixes,
            "cache_mib": round(cache.stats.size_bytes / 2**20, 2),
            "median_ms": {
                mode: {case: median_ms(values) for case, values in samples[mode].items()} for mode in samples
            },
        }
    finally:
        for backend in backends.values():
            await backend.close()


async def bench(models: list[str], rounds: int) -> int:
    with tempfile.TemporaryDirectory() as state:
        manager = PersonaManager(PERSONAS_DIR, Path(state), refresh_interval=0.0)
        a, b = manager.get("pirate"), manager.get("butler")
    results = {name: await bench_model(name, rounds, a, b) for name in models}
    print(f"\nbench/llm_prefix on {machine()}: n_threads 2, {rounds} rounds, first-token medians (ms)")
    print("| model | case | cache off | cache on | ratio |\n|---|---|---|---|---|")
    for name, result in results.items():
        for case in CASES:
            off, on = result["median_ms"]["off"][case], result["median_ms"]["on"][case]
            ratio = f"{on / off:.2f}x" if on and off else "-"
            print(f"| {name} | {case} | {off:.0f} | {on:.0f} | {ratio} |")
    path = save("llm_prefix", {"rounds": rounds, "models": results})
    print(f"raw numbers: {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated catalog names")
    args = parser.parse_args()
    return asyncio.run(bench(args.models.split(","), args.rounds))


if __name__ == "__main__":
    sys.exit(main())
