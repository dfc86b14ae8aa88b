"""What home-command recognition adds to a chat turn (issue 13's goal: at most 50 ms on 2 cores).

    .venv/bin/python bench/home_recognition.py [--rounds 5] [--ha-url URL --ha-token TOKEN]

Times `HomeControl.answer` as the persona service calls it for every turn (a worker-thread hop,
HA's templates, the loose second pass, the clauses of a longer utterance) on chat questions (every
question of bench/persona_questions.yaml and the chat items of bench/home_commands.yaml), and on the
commands of home_commands.yaml for comparison. The home is the HA harness's (as the tests serve it),
or a live HA's exposed entities with --ha-url/--ha-token (default $HA_URL/$HA_TOKEN when set).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _suite import machine, save

from wyoming_persona.home.control import HomeControl
from wyoming_persona.home.link import HomeLink, HomeLinkSettings, build_snapshot
from wyoming_persona.home.recognizer import IntentRecognizer
from wyoming_persona.personas import PersonaManager

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = ("test4", "safety2", "test5", "test6", "test7")


def questions() -> tuple[list[str], list[str]]:
    persona = yaml.safe_load((ROOT / "bench" / "persona_questions.yaml").read_text())
    chat = [item["q"] for item in persona.get("facts", [])]
    chat += [
        q if isinstance(q, str) else q["q"] for q in persona.get("open", []) + persona.get("hostile", [])
    ]
    chat += [persona["recall"]["filler"]] if isinstance(persona.get("recall"), dict) else []
    home = yaml.safe_load((ROOT / "bench" / "home_commands.yaml").read_text())
    # The held-out sets (bench/home_commands.yaml's header) are run once, by bench/home.py only.
    items = [item for name, value in home.items() if name not in ("reset", *HELD_OUT) for item in value]
    chat += [item["text"] for item in items if item["kind"] == "chat"]
    commands = [item["text"] for item in items if item["kind"] != "chat"]
    return chat, commands


async def live_home(url: str, token: str):
    link = HomeLink(HomeLinkSettings(url, token))
    task = asyncio.create_task(link.run())
    async with asyncio.timeout(30):
        await link.connected.wait()
    task.cancel()
    return link.snapshot


def harness_home():
    from home.ha_websocket import AREAS, harness_home

    states, entries, exposed = harness_home()
    entries = [{**entry, "aliases": []} for entry in entries]  # as the harness's HA has them
    return build_snapshot(states, exposed, entries, [], AREAS, version=1)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ha-url", default=os.environ.get("HA_URL"))
    parser.add_argument("--ha-token", default=os.environ.get("HA_TOKEN"))
    args = parser.parse_args()
    home = await live_home(args.ha_url, args.ha_token) if args.ha_url and args.ha_token else harness_home()
    control = HomeControl(HomeLink(HomeLinkSettings("http://unused", "unused")), IntentRecognizer())
    control.link.snapshot = home
    await asyncio.to_thread(control.recognizer.warm, home)
    persona = PersonaManager(ROOT / "config" / "personas", Path("/nonexistent-state")).get("pirate")

    async def phrase(persona, fact):
        return None

    chat, commands = questions()
    results = {}
    for label, texts in (("chat", chat), ("commands", commands)):
        times, matched = [], 0
        for _ in range(args.rounds):
            for text in texts:
                start = time.perf_counter()
                reply = await control.answer(text, persona, phrase)
                times.append((time.perf_counter() - start) * 1000)
                matched += reply is not None
        times.sort()
        results[label] = {
            "utterances": len(texts),
            "matched": matched // args.rounds,
            "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[int(len(times) * 0.95) - 1], 1),
            "max_ms": round(times[-1], 1),
        }
        row = results[label]
        print(
            f"{label:9} {row['utterances']:3} utterances, {row['matched']:3} taken as home: "
            f"p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms, max {row['max_ms']} ms"
        )
    path = save("home_recognition", {"machine": machine(), "home_entities": len(home.entities), **results})
    print(f"results: {path}")


if __name__ == "__main__":
    asyncio.run(main())
