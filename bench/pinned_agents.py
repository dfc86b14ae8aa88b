"""A persona per wake word, through a real Home Assistant (issue 22): two pipelines with two pinned
agents answer the same question in their own words, and neither recalls what the user told the other.

Start the harness with two pinned agents (ports 11360-11379 are free for such extras) and qwen-1.5b,
the model that recalls what it was told (bench/README.md), then run this:

    H=../shared/ha-harness
    $H/run.sh start . \\
        --persona-args "--model qwen-1.5b --pinned-persona butler=11361 --pinned-persona pirate=11362" \\
        --api-args "--pinned-persona butler=11361 --pinned-persona pirate=11362"
    .venv/bin/python bench/pinned_agents.py [--butler-port 11361] [--pirate-port 11362] [--out FILE]

What it does, each step with the harness's own commands:

1. `pipeline.sh add-wyoming 127.0.0.1 PORT --name butler|pirate`: each pinned agent becomes a Wyoming
   config entry, as Settings > Devices & services > Add integration > Wyoming Protocol does (skipped
   when the alias is already recorded). HA names the agents after their personas.
2. Two pipelines (`pipeline.sh text ... --agent ENTITY --voice butler|pirate`): the butler's agent with
   the TTS voice `butler`, the pirate's with `pirate`, as README.md tells a user to set them up.
3. The same question to both; each answer must be in its persona's words (butler: "sir", pirate: "matey",
   "arr", "aye", ...) and the two must differ.
4. Memory: the user tells the butler one name and the pirate another, in ONE conversation id (HA's,
   returned by the first turn and passed on with `--conversation-id`); then each is asked the name.
   Each must answer with its own and neither may say the other's.
5. "Switch to the robot" through the butler's agent is answered ("This agent always answers as
   Jeeves.") and the active persona (the control API's GET /api/active) does not change.
6. A persona made only through the studio's endpoints, as the page makes it (its session cookie and
   token; name, identity, two style lines, speed 1.2, greeting), is made active and answers through
   HA's main persona agent with the voice `active`; then it is switched back and deleted.

It prints a PASS/FAIL table and writes bench/results/pinned-agents-<time>.json; exit 1 on any FAIL.
It does not start or stop the harness.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_HARNESS = REPO.parent / "shared" / "ha-harness"
TURN_TIMEOUT = 300.0
QUESTION = "What is the capital of France?"
WORDS = {
    "butler": re.compile(r"\b(sir|certainly|very good|indeed|madam)\b", re.IGNORECASE),
    "pirate": re.compile(r"\b(matey|arr+|aye|ahoy|me hearty|ye|be)\b", re.IGNORECASE),
}
NAMES = {"butler": "Ada", "pirate": "Bartholomew"}
API_URL = "http://127.0.0.1:11340"
"""The harness's control API (its PORTS['api'])."""
Harness = Path
"""The ha-harness folder (pipeline.sh in it)."""


class BenchError(RuntimeError):
    """The harness is not ready for this bench; the message says what to do."""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    started: str
    agents: dict[str, str] = field(default_factory=dict)
    turns: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)


def harness_state() -> dict[str, Any]:
    root = Path(os.environ.get("HA_HARNESS_ROOT", "/tmp/ha-harness"))
    try:
        return json.loads((root / "state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise BenchError(
            f"no running harness ({root / 'state.json'}: {err}); start it as the docstring says"
        ) from err


def pipeline(harness: Path, *args: str) -> dict[str, Any]:
    """`pipeline.sh ARGS --json`, parsed; BenchError when it gives no JSON."""
    argv = [str(harness / "pipeline.sh"), *args, "--json"]
    print("  $", " ".join(argv[1:]), flush=True)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TURN_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as err:
        raise BenchError(f"pipeline.sh {args[0]} took over {TURN_TIMEOUT:.0f} s") from err
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as err:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise BenchError(f"pipeline.sh {args[0]} exit {done.returncode}, no JSON: {tail}") from err


def add_agent(harness: Harness, state: dict[str, Any], name: str, port: int) -> str:
    """The conversation entity of the pinned agent on `port` (a Wyoming entry is added once)."""
    known = (state.get("agents") or {}).get(name)
    if known:
        return known
    result = pipeline(harness, "add-wyoming", "127.0.0.1", str(port), "--name", name)
    entities = [e for e in result.get("entities") or () if e.startswith("conversation.")]
    if not result.get("entry_id") or not entities:
        raise BenchError(
            f"no Wyoming agent on 127.0.0.1:{port}: start the harness with "
            f"--persona-args '--pinned-persona {name}={port}' ({json.dumps(result)[:300]})"
        )
    print(f"  added {name}: {result.get('title')!r} -> {entities[0]}", flush=True)
    return entities[0]


def turn(harness: Harness, report: Report, who: str, agent: str, text: str, conversation: str | None) -> dict:
    args = ["text", text, "--agent", agent, "--voice", who]
    if conversation:
        args += ["--conversation-id", conversation]
    result = pipeline(harness, *args)
    summary = result.get("summary") or {}
    audio = result.get("tts_audio") or {}
    record = {
        "agent": who,
        "text": text,
        "speech": summary.get("speech") or "",
        "conversation_id": summary.get("conversation_id"),
        "response_type": summary.get("response_type"),
        "tts_audio": {
            k: audio.get(k) for k in ("http_status", "bytes", "content_type", "error") if k in audio
        },
    }
    report.turns.append(record)
    print(f"    {who}: {record['speech']!r}", flush=True)
    return record


def active_persona(api_url: str) -> str:
    with urllib.request.urlopen(api_url + "/api/active", timeout=10) as response:
        return json.loads(response.read())["id"]


def run(args: argparse.Namespace) -> Report:
    harness: Harness = args.harness
    state = harness_state()
    report = Report(time.strftime("%Y-%m-%dT%H:%M:%S"))
    print("Pinned agents as Wyoming entries:", flush=True)
    for who, port in (("butler", args.butler_port), ("pirate", args.pirate_port)):
        report.agents[who] = add_agent(harness, state, who, port)
        state = harness_state()

    print(f"\nThe same question to both pipelines: {QUESTION!r}", flush=True)
    answers = {who: turn(harness, report, who, agent, QUESTION, None) for who, agent in report.agents.items()}
    for who, answer in answers.items():
        words = WORDS[who].findall(answer["speech"])
        report.check(f"{who} answers in its own words", bool(words), f"{words} in {answer['speech']!r}")
        spoken = answer["tts_audio"].get("http_status") == 200 and answer["tts_audio"].get("bytes", 0) > 1000
        report.check(f"{who} is spoken, in the voice {who!r}", spoken, str(answer["tts_audio"]))
    report.check(
        "the two answers differ",
        answers["butler"]["speech"] != answers["pirate"]["speech"],
        f"{answers['butler']['speech']!r} vs {answers['pirate']['speech']!r}",
    )

    print("\nMemory: each is told a name, in one conversation id", flush=True)
    first = turn(
        harness,
        report,
        "butler",
        report.agents["butler"],
        f"Please remember that my name is {NAMES['butler']}.",
        None,
    )
    conversation = first["conversation_id"]
    turn(
        harness,
        report,
        "pirate",
        report.agents["pirate"],
        f"Please remember that my name is {NAMES['pirate']}.",
        conversation,
    )
    for who in ("butler", "pirate"):
        other = "pirate" if who == "butler" else "butler"
        asked = turn(harness, report, who, report.agents[who], "What is my name?", conversation)
        report.check(
            f"{who} recalls what it was told",
            NAMES[who].lower() in asked["speech"].lower(),
            f"{NAMES[who]!r} in {asked['speech']!r} (conversation {asked['conversation_id']})",
        )
        report.check(
            f"{who} does not recall what the {other} was told",
            NAMES[other].lower() not in asked["speech"].lower(),
            f"{NAMES[other]!r} not in {asked['speech']!r}",
        )

    print("\nA switch through a pinned agent", flush=True)
    api_url = os.environ.get("HARNESS_API_URL") or API_URL
    before = active_persona(api_url)
    refused = turn(harness, report, "butler", report.agents["butler"], "Switch to the robot.", None)
    after = active_persona(api_url)
    report.check(
        "the butler's agent answers the switch and does not make it",
        refused["speech"].endswith("This agent always answers as Jeeves.") and before == after,
        f"{refused['speech']!r}; active {before} -> {after}",
    )
    print("\nA persona made in the studio answers through Home Assistant", flush=True)
    studio = StudioClient(api_url)
    created = studio.call("POST", "/api/studio/personas", {"id": "sunny-side", "persona": SUNNY})
    report.check(
        "the studio creates the persona", created[0] in (201, 409), f"HTTP {created[0]} {created[1]}"
    )
    studio.call("PUT", "/api/active", {"id": "sunny-side"})
    answer = turn(harness, report, "active", "persona", "Good morning! Who are you?", None)
    report.check(
        "the studio's persona answers through HA in its words, spoken",
        bool(SUNNY_WORDS.search(answer["speech"])) and answer["tts_audio"].get("http_status") == 200,
        f"{answer['speech']!r} {answer['tts_audio']}",
    )
    studio.call("PUT", "/api/active", {"id": before})
    deleted = studio.call("DELETE", "/api/studio/personas/sunny-side")
    report.check("the studio deletes it again", deleted[0] == 200, f"HTTP {deleted[0]} {deleted[1]}")
    return report


SUNNY_WORDS = re.compile(r"\b(sunny|sunshine|sunrises?|sun)\b", re.IGNORECASE)
SUNNY = {
    "name": "Sunny Side",
    "greeting": "Good morning, sunshine!",
    "prompt": {
        "identity": "You are Sunny Side, a cheerful morning person who loves sunrises.",
        "style": ["You are cheerful and warm.", "You mention the sunshine."],
    },
    "voice": {"model": "en_US-joe-medium", "speed": 1.2},
}


class StudioClient:
    """The control API as the studio page uses it: the page's cookie and session token on every write."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        with self.opener.open(api_url + "/", timeout=10) as response:
            page = response.read().decode()
        found = re.search(r'<meta name="studio-session" content="([^"]*)">', page)
        if found is None:
            raise BenchError(f"{api_url}/ is not the persona studio (an older API?)")
        self.token = found.group(1)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, str]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.api_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "X-Studio-Session": self.token},
        )
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, response.read().decode()[:300]
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()[:300]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--butler-port", type=int, default=11361)
    parser.add_argument("--pirate-port", type=int, default=11362)
    parser.add_argument("--harness", type=Path, default=DEFAULT_HARNESS, help="the ha-harness folder")
    parser.add_argument("--out", type=Path, default=None, help="the JSON report (default bench/results/...)")
    args = parser.parse_args(argv)
    try:
        report = run(args)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or REPO / "bench" / "results" / f"pinned-agents-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({**asdict(report), "checks": [asdict(c) for c in report.checks]}, indent=2) + "\n"
    )
    failed = [c for c in report.checks if not c.ok]
    print(f"\n{len(report.checks) - len(failed)} passed, {len(failed)} failed; report in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
