"""End of speech -> first reply audio through our own client (`talk`), on questions the project has
never used: with speculative replies (the ASR posts its early transcript to the persona service), with
speculation off, and with a speculation that was wrong; all in one run, turns interleaved.

    .venv/bin/python bench/turn.py [--rounds 1] [--personas assistant,pirate,butler] [--whole] [--switch]
                                   [--questions bench/sets/turn_unseen2.txt]

The services as `make run` starts them: whisper tiny.en with `--endpointing-ms 500 --smart-turn
--beam-size 1`, the persona service's default model (qwen-1.5b), the joe Piper voice. Audio is
streamed in real time as a satellite would, each question followed by 0.8 s of silence. Every persona
answers once before anything is timed, so the service's own start-up work is over.

Modes (each question in each mode, their order rotating, never the same question twice in a row):
- `speculation`: the ASR of the suite, whose `--speculation-uri` names the persona service;
- `off`: a second ASR with the same flags but no link (the persona service is the same);
- `wrong`: the second ASR, and the bench posts the question without its last two words on the link
  0.2 s after the end of speech (an early transcript the user then went on from), taken back after the
  turn: the reply started on other words must be cancelled, and the turn must be no slower than `off`;
- `whole` (`--whole`): no speculation, and the whole reply before one synthesis (one step after another).

`--switch` also measures what a persona switch adds to the next turn (the first turn after switching
to each persona against the same question asked again later).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _suite import BenchSuite, bench_suite, machine, median_ms, save

from wyoming_persona.personas import PersonaManager, load_folder
from wyoming_persona.services import service
from wyoming_persona.speculate import Speculate
from wyoming_persona.suite import HOST, Planned, free_ports, wait_until_ready
from wyoming_persona.talk.audio_clip import speech_end_seconds
from wyoming_persona.talk.turn import Endpoints, TurnResult, run_turn, synthesize_question

WARM_UP = "What can you do?"
UNSEEN = (
    "How long does it take light from the sun to reach us?",
    "What is a good name for a pet tortoise?",
    "Why do cats purr?",
    "How many legs does a spider have?",
    "What should I pack for a day at the beach?",
    "Who painted the Mona Lisa?",
    "What is the tallest mountain in Africa?",
    "How do bees make honey?",
    "Can you suggest a quick breakfast idea?",
    "Why is the ocean salty?",
    "What language do people speak in Brazil?",
    "How often should I water a cactus?",
)
"""Written for this bench (issue 20); no other bench, test or persona example uses them. They were
used while issue 20 was built, so they are tuned on now: `--questions` takes a new set (one per line)."""
PERSONAS = ("assistant", "pirate", "butler")
STEPS = ("transcript", "first_reply_text", "first_reply_audio", "total")
GOAL_MS = 700.0
SWITCH_GOAL_MS = 500.0
NO_SPEECH_CACHE = ("--speech-cache-mib", "0")
"""A reply said in two modes would come from the TTS's cache the second time."""
STRIDE = 5
"""Turns in a row ask different questions (in step i, the k-th mode asks question i + k * STRIDE): llama.cpp
keeps the last prompt it read, so the same question asked again would find its prompt read already."""
WRONG_AFTER_S = 0.2
"""When the wrong words are posted: about when the ASR's silence onset is seen."""


async def bench(args: argparse.Namespace) -> int:
    extra = tuple(args.asr_args.split())
    async with (
        bench_suite(("asr", "persona", "tts"), {"asr": extra, "tts": NO_SPEECH_CACHE}) as services,
        second_asr(services, extra) as plain_asr,
    ):
        return await _bench(args, services, plain_asr)


async def _bench(args: argparse.Namespace, services: BenchSuite, plain_asr: str) -> int:
    linked = Endpoints(asr=services["asr"], persona=services["persona"], tts=services["tts"])
    plain = Endpoints(asr=plain_asr, persona=services["persona"], tts=services["tts"])
    voice = "en_US-joe-medium"
    texts = questions_from(args.questions)
    questions = {t: (await synthesize_question(t, linked, voice)).padded(0.3, 0.8) for t in texts}
    warm_up = (await synthesize_question(WARM_UP, linked, voice)).padded(0.3, 0.8)
    personas = [p for p in args.personas.split(",") if p]
    await warm_every_persona(services, plain, warm_up, then=personas[0])
    modes = ["speculation", "off", "wrong", *(["whole"] if args.whole else [])]
    results: dict[str, list[TurnResult]] = {mode: [] for mode in modes}
    rows: list[dict] = []
    turn = 0
    for round_index in range(args.rounds):
        for persona_id in personas:
            services.switch(persona_id)
            for index in range(len(texts)):
                order = modes[turn % len(modes) :] + modes[: turn % len(modes)]
                turn += 1
                for mode in order:
                    text = texts[(index + modes.index(mode) * STRIDE) % len(texts)]
                    clip = questions[text]
                    result = await _turn(mode, clip, text, linked, plain)
                    results[mode].append(result)
                    first = result.timings.first_reply_audio
                    rows.append({"mode": mode, "persona": persona_id, "question": text, "ms": _ms(first)})
                    print(
                        f"round {round_index + 1} {persona_id:<9} {mode:<11} {_ms(first):6.0f} ms to first "
                        f"audio | {result.transcript!r} -> {result.reply[:50]!r}",
                        flush=True,
                    )
    table = {
        mode: {step: median_ms([getattr(r.timings, step) for r in results[mode]]) for step in STEPS}
        for mode in modes
    }
    spread = {mode: _spread([r.timings.first_reply_audio for r in results[mode]]) for mode in modes}
    print(
        f"\nbench/turn on {machine()}: {args.rounds} round(s) x {len(texts)} questions "
        f"({args.questions or 'UNSEEN'}) x "
        f"{len(personas)} personas ({', '.join(personas)}), medians (ms)"
    )
    print(f"{'end of speech ->':<22}" + "".join(f"{mode:>13}" for mode in modes))
    for step in STEPS:
        print(f"{step:<22}" + "".join(f"{table[mode][step]!s:>13}" for mode in modes))
    print(f"{'first audio min-max':<22}" + "".join(f"{spread[mode]:>13}" for mode in modes))
    speculation, off, wrong = (table[m]["first_reply_audio"] for m in ("speculation", "off", "wrong"))
    verdict = "meets" if speculation is not None and speculation <= GOAL_MS else "misses"
    print(
        f"\nfirst reply audio with speculation: median {speculation} ms, {verdict} the {GOAL_MS:.0f} ms goal"
    )
    print(
        f"a wrong speculation: median {wrong} ms against {off} ms with speculation off "
        f"({'no slower' if wrong is not None and off is not None and wrong <= off else 'slower'})"
    )
    switch = await _switch_costs(services, plain, questions, personas) if args.switch else None
    path = save(
        f"turn-{Path(args.questions).stem}" if args.questions else "turn",
        {
            "rounds": args.rounds,
            "personas": personas,
            "questions": texts,
            "medians_ms": table,
            "first_audio_spread_ms": spread,
            "turns": rows,
            "switch_ms": switch,
        },
    )
    print(f"saved {path}")
    return 0


async def _turn(mode: str, clip, text: str, linked: Endpoints, plain: Endpoints) -> TurnResult:
    if mode == "speculation":
        return await run_turn(clip, linked)
    if mode in ("off", "whole"):
        return await run_turn(clip, plain, streaming=mode == "off")
    wrong = " ".join(text.split()[:-2])
    post = asyncio.create_task(
        _post(plain.persona, wrong, speech_end_seconds(clip.to_asr_format()) + WRONG_AFTER_S)
    )
    try:
        return await run_turn(clip, plain)
    finally:
        await post
        await _post(plain.persona, "", 0.0)  # the ASR takes its early words back when the final differs


async def _post(persona: str, text: str, after: float) -> None:
    """Send a speculate event on a connection of its own, `after` seconds from now."""
    from wyoming.client import AsyncClient

    await asyncio.sleep(after)
    async with asyncio.timeout(10), AsyncClient.from_uri(persona) as client:
        await client.write_event(Speculate(text).event())


@contextlib.asynccontextmanager
async def second_asr(services: BenchSuite, extra: tuple[str, ...]) -> AsyncIterator[str]:
    """An ASR with the suite's flags but no speculation link, on a free port."""
    port = free_ports(("asr-plain",))["asr-plain"]
    planned = Planned("asr", port, ("--uri", f"tcp://{HOST}:{port}", *service("asr").suite_args, *extra))
    log = (services.root / "logs" / "asr-plain.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wyoming_persona", "asr", *planned.args,
        stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
    )  # fmt: skip
    log.close()
    try:
        await wait_until_ready(planned, process)
        yield planned.address
    finally:
        if process.returncode is None:
            process.terminate()
            async with asyncio.timeout(10):
                await process.wait()


async def _switch_costs(
    services: BenchSuite, endpoints: Endpoints, questions: dict, personas: list[str]
) -> dict:
    """The first turn after switching to a persona against the same question later as that persona."""
    clips = list(questions.values())
    pairs = []
    default = PersonaManager(services.root / "personas", services.root / "state").active().id
    for index, persona_id in enumerate(p for p in personas if p != default):
        question, other = clips[index % len(clips)], clips[(index + 1) % len(clips)]
        services.switch(persona_id)
        after = await run_turn(question, endpoints)
        await run_turn(other, endpoints)
        again = await run_turn(question, endpoints)
        pairs.append((after, again))
    after, again = (median_ms([pair[i].timings.first_reply_audio for pair in pairs]) for i in (0, 1))
    extra = round(after - again, 1) if after is not None and again is not None else None
    verdict = "meets" if extra is not None and extra <= SWITCH_GOAL_MS else "misses"
    print(
        f"persona switch adds {extra} ms to the next turn's first audio "
        f"({verdict} the {SWITCH_GOAL_MS:.0f} ms goal)"
    )
    return {"after_switch": after, "same_persona": again, "added": extra}


async def warm_every_persona(services: BenchSuite, endpoints: Endpoints, clip, then: str) -> None:
    """Once the persona service's start-up work is done, every persona answers `clip` once, untimed
    (its prompt is then processed); `then` is the persona left active."""
    await services.wait_for_log("persona", "Persona prompts ready")
    for persona_id in [*sorted(load_folder(services.root / "personas")), then]:
        services.switch(persona_id)
        await run_turn(clip, endpoints, realtime=False)


def questions_from(path: str | None) -> list[str]:
    """The questions in a file, one per line; None: the bench's own (UNSEEN)."""
    if path is None:
        return list(UNSEEN)
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line]


def _ms(seconds: float | None) -> float:
    return float("nan") if seconds is None else seconds * 1000


def _spread(values: list[float | None]) -> str:
    kept = [v * 1000 for v in values if v is not None]
    return f"{min(kept):.0f}-{max(kept):.0f}" if kept else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--personas", default=",".join(PERSONAS), help="comma-separated persona ids")
    parser.add_argument("--whole", action="store_true", help="also the one-step-after-another path")
    parser.add_argument("--switch", action="store_true", help="also what a persona switch adds")
    parser.add_argument("--questions", help="a file of questions, one per line (default: UNSEEN)")
    parser.add_argument(
        "--asr-args", default="", help="extra flags for both ASR services, e.g. for ablations"
    )
    args = parser.parse_args()
    return asyncio.run(bench(args))


if __name__ == "__main__":
    raise SystemExit(main())
