"""Two versions side by side: end of speech -> first reply audio of this checkout (A) against another
commit (B), or against this checkout with other persona-service flags, each question asked of both in
turn, so both see the same machine at the same time.

    .venv/bin/python bench/turn_ab.py --before 4763b2c [--questions FILE] [--personas assistant,pirate]
    .venv/bin/python bench/turn_ab.py --persona-args-b "--n-threads 2"

Both suites run as `make run` starts them (speculation on, the TTS's speech cache off, as in
`bench/turn.py`). B's services import the package from a git worktree of `--before` (PYTHONPATH, with
PYTHONSAFEPATH so the working directory does not come first); the personas and models are the same.
The order alternates every question (A first, then B first). Runs of one code differ by 50-100 ms an
hour apart on two cores; pairs taken side by side differ far less, so the paired differences are the
figure to read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _suite import REPO, bench_suite, machine, save
from turn import NO_SPEECH_CACHE, PERSONAS, WARM_UP, questions_from, warm_every_persona

from wyoming_persona.talk.turn import Endpoints, TurnResult, run_turn, synthesize_question

VOICE = "en_US-joe-medium"
SERVICES = ("asr", "persona", "tts")
STEPS = ("transcript", "first_reply_text", "first_reply_audio")


@contextlib.contextmanager
def worktree(revision: str | None) -> Iterator[Path | None]:
    """A detached git worktree of `revision` in a temporary folder (None: no worktree)."""
    if revision is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="wp-ab-") as tmp:
        path = Path(tmp) / "before"
        git = ("git", "-C", str(REPO))
        subprocess.run([*git, "worktree", "add", "--detach", str(path), revision], check=True, timeout=120)
        try:
            yield path
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(path)], check=False, timeout=120)


@contextlib.contextmanager
def imports_from(path: Path | None) -> Iterator[None]:
    """Services started inside import the package from `path` (None: from this checkout)."""
    saved = {key: os.environ.get(key) for key in ("PYTHONPATH", "PYTHONSAFEPATH")}
    os.environ["PYTHONSAFEPATH"] = "1"
    if path is not None:
        os.environ["PYTHONPATH"] = str(path)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def bench(args: argparse.Namespace) -> int:
    extra_b = {"tts": NO_SPEECH_CACHE, "persona": tuple(args.persona_args_b.split())}
    with worktree(args.before) as before:
        async with contextlib.AsyncExitStack() as stack:
            with imports_from(None):
                a = await stack.enter_async_context(bench_suite(SERVICES, {"tts": NO_SPEECH_CACHE}))
            with imports_from(before):
                _check_package(before)
                b = await stack.enter_async_context(bench_suite(SERVICES, extra_b))
            return await _pairs(args, {"A": a, "B": b})


def _check_package(path: Path | None) -> None:
    """The services started now import the package from `path` (else A and B would be one code)."""
    found = subprocess.run(
        [sys.executable, "-c", "import wyoming_persona; print(wyoming_persona.__file__)"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    expected = (path or REPO).resolve()
    if not Path(found).resolve().is_relative_to(expected):
        raise SystemExit(f"B would import {found}, not the package under {expected}")


async def _pairs(args: argparse.Namespace, suites: dict) -> int:
    endpoints = {k: Endpoints(asr=s["asr"], persona=s["persona"], tts=s["tts"]) for k, s in suites.items()}
    texts = questions_from(args.questions)
    clips = {t: (await synthesize_question(t, endpoints["A"], VOICE)).padded(0.3, 0.8) for t in texts}
    warm_up = (await synthesize_question(WARM_UP, endpoints["A"], VOICE)).padded(0.3, 0.8)
    personas = [p for p in args.personas.split(",") if p]
    for key, suite in suites.items():
        await warm_every_persona(suite, endpoints[key], warm_up, then=personas[0])
    rows: list[dict] = []
    for persona_id in personas:
        for suite in suites.values():
            suite.switch(persona_id)
        for text in texts:
            order = ("A", "B") if len(rows) % 2 == 0 else ("B", "A")
            results: dict[str, TurnResult] = {}
            for key in order:
                results[key] = await run_turn(clips[text], endpoints[key])
                await asyncio.sleep(0.5)
            row = {"persona": persona_id, "question": text}
            for key, result in results.items():
                row[key] = {step: _ms(getattr(result.timings, step)) for step in STEPS}
                row[key]["reply"] = result.reply
            rows.append(row)
            a, b = (row[key]["first_reply_audio"] for key in ("A", "B"))
            print(f"{persona_id:<9} A {a or 0:6.0f} B {b or 0:6.0f} ms to first audio | {text}", flush=True)
    versus = f"commit {args.before}" if args.before else f"flags {args.persona_args_b!r}"
    print(f"\nbench/turn_ab on {machine()}: A this checkout, B {versus}; {len(rows)} pairs (ms)")
    for step in STEPS:
        pairs = [(row["A"][step], row["B"][step]) for row in rows]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        diffs = [x - y for x, y in pairs]
        print(
            f"{step:<18} A {statistics.median(x for x, _ in pairs):6.0f}  "
            f"B {statistics.median(y for _, y in pairs):6.0f}  A - B median {statistics.median(diffs):5.0f} "
            f"mean {statistics.mean(diffs):5.0f}, A sooner in {sum(d < 0 for d in diffs)}/{len(diffs)}"
        )
    path = save("turn_ab", {"before": args.before, "persona_args_b": args.persona_args_b, "pairs": rows})
    print(f"saved {path}")
    return 0


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--before", help="the commit B runs (default: this checkout, with --persona-args-b)")
    parser.add_argument("--persona-args-b", default="", help="extra flags for B's persona service")
    parser.add_argument("--personas", default=",".join(PERSONAS), help="comma-separated persona ids")
    parser.add_argument("--questions", help="a file of questions, one per line (default: bench/turn.py's)")
    args = parser.parse_args()
    if args.before is None and not args.persona_args_b:
        parser.error("give --before COMMIT or --persona-args-b FLAGS: otherwise A and B are the same")
    return asyncio.run(bench(args))


if __name__ == "__main__":
    raise SystemExit(main())
