"""End of speech -> first reply audio over spoken questions: our streaming path against the same
services used one step after the other (transcribe, whole reply, then synthesize); then what a persona
switch adds to the next turn.

    .venv/bin/python bench/turn.py [--rounds 3]

The services as `make run` starts them: whisper tiny.en, the persona service's default model (qwen-1.5b),
the joe Piper voice. Audio is streamed in real time as a satellite would, each question followed by
0.8 s of silence before audio-stop. Every persona answers once before anything is timed, so the
service's own start-up work (processing each persona's prompt) is over.

Switch: for each persona but the default one, the first turn after switching to it, then another
question, then the first question again as that persona; the difference between the first and the last
turn is what the switch costs (the question in between keeps the model from reusing the last one).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _suite import BenchSuite, bench_suite, machine, median_ms, save

from wyoming_persona.personas import PersonaManager, load_folder
from wyoming_persona.talk.turn import Endpoints, TurnResult, run_turn, synthesize_question

QUESTIONS = (
    "What can you do?",
    "Tell me a fun fact about the ocean.",
    "How should I start my morning?",
    "What is a good name for a cat?",
    "Why is the sky blue?",
)
STEPS = ("transcript", "first_reply_text", "first_reply_audio", "total")
GOAL_MS = 1200.0
SWITCH_GOAL_MS = 500.0


async def bench(rounds: int, asr_args: tuple[str, ...]) -> int:
    async with bench_suite(("asr", "persona", "tts"), {"asr": asr_args}) as services:
        endpoints = Endpoints(asr=services["asr"], persona=services["persona"], tts=services["tts"])
        questions = [
            (await synthesize_question(text, endpoints, "en_US-joe-medium")).padded(0.3, 0.8)
            for text in QUESTIONS
        ]
        await services.wait_for_log("persona", "Persona prompts ready")
        personas = sorted(load_folder(services.root / "personas"))
        default = PersonaManager(services.root / "personas", services.root / "state").active().id
        for persona_id in [*(p for p in personas if p != default), default]:  # warm-up, default last
            services.switch(persona_id)
            await run_turn(questions[0], endpoints, realtime=False)
        results: dict[bool, list[TurnResult]] = {True: [], False: []}
        for round_index in range(rounds):
            for index, question in enumerate(questions):
                order = (True, False) if (round_index + index) % 2 == 0 else (False, True)
                for streaming in order:
                    result = await run_turn(question, endpoints, streaming=streaming)
                    results[streaming].append(result)
                    mode = "stream" if streaming else "whole "
                    print(
                        f"round {round_index + 1} {mode} {result.timings.first_reply_audio * 1000:6.0f} ms "
                        f"to first audio | {result.transcript!r} -> {result.reply[:60]!r}",
                        flush=True,
                    )
        switches = await _switch_costs(services, endpoints, questions, [p for p in personas if p != default])
    table = {
        mode: {step: median_ms([getattr(r.timings, step) for r in results[streaming]]) for step in STEPS}
        for mode, streaming in (("streaming", True), ("non_streaming", False))
    }
    print(f"\nbench/turn on {machine()}: {rounds} rounds x {len(QUESTIONS)} questions, medians (ms)")
    print(f"{'end of speech ->':<22}{'streaming':>12}{'non-streaming':>16}{'ratio':>8}")
    for step in STEPS:
        ours, theirs = table["streaming"][step], table["non_streaming"][step]
        ratio = f"{ours / theirs:.2f}" if ours and theirs else "-"
        print(f"{step:<22}{ours!s:>12}{theirs!s:>16}{ratio:>8}")
    first_audio = table["streaming"]["first_reply_audio"]
    verdict = "meets" if first_audio is not None and first_audio <= GOAL_MS else "misses"
    print(f"\nstreaming first reply audio median {first_audio} ms {verdict} the {GOAL_MS:.0f} ms goal")
    after, again = (median_ms([pair[i].timings.first_reply_audio for pair in switches]) for i in (0, 1))
    extra = round(after - again, 1) if after is not None and again is not None else None
    verdict = "meets" if extra is not None and extra <= SWITCH_GOAL_MS else "misses"
    print(
        f"first reply audio, first turn after a switch {after} ms, same persona again {again} ms: "
        f"the switch adds {extra} ms ({verdict} the {SWITCH_GOAL_MS:.0f} ms goal)"
    )
    path = save(
        "turn",
        {
            "rounds": rounds,
            "questions": list(QUESTIONS),
            "medians_ms": table,
            "switch_ms": {"after_switch": after, "same_persona": again, "added": extra},
        },
    )
    print(f"saved {path}")
    return 0


async def _switch_costs(
    services: BenchSuite, endpoints: Endpoints, questions: list, persona_ids: list[str]
) -> list[tuple[TurnResult, TurnResult]]:
    """(first turn after switching to it, the same question later as that persona) per persona."""
    pairs = []
    for index, persona_id in enumerate(persona_ids):
        question, other = questions[index % len(questions)], questions[(index + 1) % len(questions)]
        services.switch(persona_id)
        after = await run_turn(question, endpoints)
        await run_turn(other, endpoints)
        again = await run_turn(question, endpoints)
        pairs.append((after, again))
        print(
            f"switch to {persona_id:<10} {after.timings.first_reply_audio * 1000:6.0f} ms, "
            f"again {again.timings.first_reply_audio * 1000:6.0f} ms | {after.reply[:60]!r}",
            flush=True,
        )
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--asr-args", default="", help="extra flags for the ASR service, e.g. for ablations")
    args = parser.parse_args()
    return asyncio.run(bench(args.rounds, tuple(args.asr_args.split())))


if __name__ == "__main__":
    raise SystemExit(main())
