"""Home control through a real Home Assistant: commands, state questions and chat (issue 13).

    .venv/bin/python bench/home.py [--set dev|test|test2|test3|safety|test4|safety2|test5|test6|test7|all]
                                   [--agent persona|home|ENTITY] [--personas pirate,butler] [--limit N]
                                   [--tts] [--out FILE]

Needs the HA harness running (/work/shared/ha-harness: `run.sh start .`; for `--agent home` alone
`--services none` is enough). Items come from bench/home_commands.yaml. For each item the bench resets
the home through HA's REST API, runs the item's `setup` calls, checks that a command's expectation is
not already true (else the item is `invalid`), runs one text turn with the harness's
`pipeline.sh text ... --json` (a real Assist pipeline: intent stage, and TTS with `--tts`), reads the
home again and grades the turn:

- command: every expectation holds afterwards and no other home entity changed;
- state: the reply matches `speech` (and not `speech_not`), and nothing in the home changed;
- chat: nothing in the home changed and no service was called on a home entity.

It also records the reply, whether it is Home Assistant's stock phrasing (STOCK_PHRASES: "Turned on
the light" is HA speaking, not the persona), `processed_locally`, the response type and the intent
stage's time. With `--personas a,b` the active persona is switched before each pass (the control API's
PUT /api/active when it answers, else the harness's state folder) and the summary counts the command
items on which the personas spoke different confirmations. A failed turn is recorded and the run goes
on. Results: bench/results/home-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
ITEMS_FILE = REPO / "bench" / "home_commands.yaml"
RESULTS = REPO / "bench" / "results"
DEFAULT_HARNESS = REPO.parent / "shared" / "ha-harness"
DEFAULT_API = "http://127.0.0.1:11340"
KINDS = ("command", "state", "chat")
SETS = ("dev", "test", "test2", "test3", "safety", "test4", "safety2", "test5", "test6", "test7")
"""In the order of bench/home_commands.yaml; its header says which were tuned on and which are held out."""
HOME_DOMAINS = (
    "light",
    "switch",
    "cover",
    "climate",
    "sensor",
    "fan",
    "lock",
    "media_player",
    "scene",
    "script",
)
HTTP_TIMEOUT = 10.0
TURN_TIMEOUT = 240.0
SETTLE_TIMEOUT = 5.0
SWITCH_WAIT = 1.5
"""The persona services poll the shared state file every 0.5 s (personas/manager.py)."""
BRIGHTNESS_TOLERANCE = 2.0
NUMBER_TOLERANCE = 0.25
TRACKED_ATTRIBUTES = ("brightness", "temperature", "current_temperature", "current_position", "hvac_mode")

STOCK_PHRASES = (
    r"^turned (on|off)( the \w+)?$",
    r"^(opened|closed|opening|closing)( the \w+)?$",
    r"^(temperature|brightness|position) set( to .*)?$",
    r"^set (the )?\w+( \w+)? to [\d.]+( degrees| ?%| percent)?$",
    r"^(yes|no)(, (on|off|open|closed|opening|closing))?$",
    r"^(.+ is )?-?\d+(\.\d+)? ?(degrees|°[cf]|%)$",
    r"^\d{1,2}:\d{2} ?(am|pm)$",
    r"^no timers$",
    r"^unknown intent\b",
    r"error handling intent",
    r"matchfailederror",
    r"^sorry, (i am not aware of|i couldn't understand|there (is|are) no)\b",
    r"^no (device|entity|area) (called|named)\b",
)
"""Home Assistant's own replies, whole (as its built-in agent gave them on the harness): "Turned on the
light", "Opening", "Temperature set to 22 degrees", "Brightness set", "No, off", "19.5 degrees",
"Outdoor temperature is 31.0 °C", "2:17 AM", "Sorry, I am not aware of any device called ...". A list
of the home's own entity names ("Bedroom Light and Kitchen Light") is matched by `is_stock` too."""


class BenchError(Exception):
    """A problem that stops the run (bad items file, harness not running)."""


# -- items ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceCall:
    domain: str
    service: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Item:
    set_name: str
    index: int
    text: str
    kind: str
    setup: tuple[ServiceCall, ...]
    expect: Mapping[str, Any]

    @property
    def key(self) -> str:
        return f"{self.set_name}#{self.index}"


@dataclass(frozen=True)
class ItemFile:
    reset: tuple[ServiceCall, ...]
    items: tuple[Item, ...]


def _calls(data: object, where: str) -> tuple[ServiceCall, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise BenchError(f"{where}: expected a list of `- domain.service: {{data}}`")
    calls = []
    for index, entry in enumerate(data):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise BenchError(f"{where}[{index}]: expected one `domain.service: {{data}}` mapping")
        ((name, body),) = entry.items()
        domain, _, service = str(name).partition(".")
        if not domain or not service or not isinstance(body, dict | None):
            raise BenchError(f"{where}[{index}]: bad service call {name!r}")
        calls.append(ServiceCall(domain, service, dict(body or {})))
    return tuple(calls)


def _check_expect(expect: object, kind: str, where: str) -> dict[str, Any]:
    if expect is None:
        expect = {}
    if not isinstance(expect, dict):
        raise BenchError(f"{where}: 'expect' must be a mapping")
    for key, value in expect.items():
        if key in ("speech", "speech_not"):
            try:
                re.compile(str(value))
            except re.error as err:
                raise BenchError(f"{where}: bad {key} regex: {err}") from err
        elif "." not in key:
            raise BenchError(f"{where}: expect key {key!r} is neither an entity id nor speech/speech_not")
        elif not isinstance(value, str | dict):
            raise BenchError(f"{where}: expect {key} must be a state or a mapping of checks")
    entities = [k for k in expect if "." in k]
    if kind == "command" and not entities:
        raise BenchError(f"{where}: a command needs an entity expectation")
    if kind == "state" and "speech" not in expect:
        raise BenchError(f"{where}: a state question needs a 'speech' regex")
    if kind != "command" and entities:
        raise BenchError(f"{where}: only commands expect entity changes")
    return dict(expect)


def parse_items(data: object, where: str) -> ItemFile:
    """The item file from a loaded YAML document; a BenchError names what is wrong."""
    if not isinstance(data, dict):
        raise BenchError(f"{where}: expected a mapping with reset/dev/test")
    items = []
    for set_name in SETS:
        for index, raw in enumerate(data.get(set_name) or ()):
            at = f"{where}: {set_name}[{index}]"
            if not isinstance(raw, dict) or not str(raw.get("text") or "").strip():
                raise BenchError(f"{at}: needs a non-empty 'text'")
            kind = raw.get("kind")
            if kind not in KINDS:
                raise BenchError(f"{at}: kind must be one of {KINDS}, not {kind!r}")
            unknown = set(raw) - {"text", "kind", "setup", "expect"}
            if unknown:
                raise BenchError(f"{at}: unknown keys {sorted(unknown)}")
            items.append(
                Item(
                    set_name,
                    index,
                    str(raw["text"]).strip(),
                    kind,
                    _calls(raw.get("setup"), f"{at}.setup"),
                    _check_expect(raw.get("expect"), kind, at),
                )
            )
    texts = [item.text.lower() for item in items]
    duplicates = sorted({t for t in texts if texts.count(t) > 1})
    if duplicates:
        raise BenchError(f"{where}: the same text twice: {duplicates}")
    return ItemFile(_calls(data.get("reset"), f"{where}: reset"), tuple(items))


def load_items(path: Path) -> ItemFile:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise BenchError(f"{path}: {err}") from err
    return parse_items(data, str(path))


# -- grading ----------------------------------------------------------------------------------------


def brightness_pct(attributes: Mapping[str, Any]) -> float | None:
    value = attributes.get("brightness")
    return None if value is None else round(float(value) * 100 / 255, 1)


def _number_ok(actual: float | None, wanted: object, tolerance: float) -> bool:
    if actual is None:
        return False
    if isinstance(wanted, dict):
        ok = True
        if "lt" in wanted:
            ok = ok and actual < float(wanted["lt"])
        if "gt" in wanted:
            ok = ok and actual > float(wanted["gt"])
        return ok
    return abs(actual - float(wanted)) <= tolerance


def _float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def entity_failures(entity_id: str, wanted: object, state: Mapping[str, Any] | None) -> list[str]:
    """What does not hold for one entity expectation (empty when it holds)."""
    if state is None:
        return [f"{entity_id} missing"]
    checks = {"state": wanted} if isinstance(wanted, str) else dict(wanted)  # type: ignore[arg-type]
    attributes = state.get("attributes") or {}
    failures = []
    for check, value in checks.items():
        if check == "state":
            ok, got = state.get("state") == str(value), state.get("state")
        elif check == "brightness_pct":
            got = brightness_pct(attributes)
            ok = _number_ok(got, value, BRIGHTNESS_TOLERANCE)
        elif check == "temperature":
            got = _float(attributes.get("temperature"))
            ok = _number_ok(got, value, NUMBER_TOLERANCE)
        elif check == "position":
            got = _float(attributes.get("current_position"))
            ok = _number_ok(got, value, NUMBER_TOLERANCE)
        else:
            raise BenchError(f"unknown check {check!r} for {entity_id}")
        if not ok:
            failures.append(f"{entity_id} {check} {value!r}, got {got!r}")
    return failures


def snapshot_view(state: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of an entity's state a turn may change: its state and a few attributes."""
    if state is None:
        return {}
    attributes = state.get("attributes") or {}
    return {
        "state": state.get("state"),
        **{a: attributes.get(a) for a in TRACKED_ATTRIBUTES if a in attributes},
    }


def changed_entities(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Home entities whose state or tracked attributes differ: {entity: [before, after]}."""
    changed = {}
    for entity_id in sorted(set(before) | set(after)):
        old, new = snapshot_view(before.get(entity_id)), snapshot_view(after.get(entity_id))
        if old != new:
            changed[entity_id] = [old, new]
    return changed


def _entity_ids(service_data: object) -> list[str]:
    if not isinstance(service_data, dict):
        return []
    value = service_data.get("entity_id")
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


def home_service_calls(calls: Sequence[Mapping[str, Any]]) -> list[str]:
    """Service calls made on home entities (not on the template entities' helpers)."""
    touched = []
    for call in calls:
        ids = _entity_ids(call.get("service_data"))
        domain = str(call.get("domain"))
        if any(i.split(".", 1)[0] in HOME_DOMAINS for i in ids) or (not ids and domain in HOME_DOMAINS):
            touched.append(f"{domain}.{call.get('service')} {','.join(ids)}".strip())
    return touched


def is_stock(speech: str, names: Sequence[str] = ()) -> bool:
    """Whether `speech` is Home Assistant talking (STOCK_PHRASES, or a bare list of entity `names`)."""
    text = speech.strip().rstrip(".!")
    if any(re.search(p, text, re.IGNORECASE) for p in STOCK_PHRASES):
        return True
    if names and text:
        name = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        return re.fullmatch(rf"({name})((, | and |, and )({name}))*", text, re.IGNORECASE) is not None
    return False


@dataclass(frozen=True)
class Grade:
    success: bool
    reasons: tuple[str, ...]


def grade(
    item: Item,
    speech: str,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    calls: Sequence[Mapping[str, Any]],
) -> Grade:
    """Whether the turn did what the item asks (see the module docstring)."""
    reasons: list[str] = []
    changed = changed_entities(before, after)
    flags = re.IGNORECASE | re.DOTALL
    if item.kind == "command":
        wanted = {k: v for k, v in item.expect.items() if "." in k}
        for entity_id, value in wanted.items():
            reasons += entity_failures(entity_id, value, after.get(entity_id))
        reasons += [f"also changed {e}" for e in changed if e not in wanted]
    else:
        reasons += [f"changed {e}" for e in changed]
        reasons += [f"called {c}" for c in home_service_calls(calls)]
    if "speech" in item.expect and not re.search(str(item.expect["speech"]), speech, flags):
        reasons.append("speech does not match")
    if "speech_not" in item.expect and re.search(str(item.expect["speech_not"]), speech, flags):
        reasons.append("speech matches speech_not")
    return Grade(not reasons, tuple(reasons))


# -- Home Assistant and the harness -----------------------------------------------------------------


@dataclass(frozen=True)
class Harness:
    ha_url: str
    token: str
    pipeline: Path
    run_dir: Path
    home: tuple[str, ...]

    def _request(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.ha_url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            return json.loads(response.read() or b"null")

    def call(self, call: ServiceCall) -> None:
        self._request("POST", f"/api/services/{call.domain}/{call.service}", dict(call.data))

    def states(self) -> dict[str, Any]:
        """The home's entities as HA has them now."""
        wanted = set(self.home)
        return {s["entity_id"]: s for s in self._request("GET", "/api/states") if s["entity_id"] in wanted}

    def settled_states(self) -> dict[str, Any]:
        """States once two reads 0.2 s apart agree (template entities follow their helpers)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        last = {k: snapshot_view(v) for k, v in self.states().items()}
        while True:
            time.sleep(0.2)
            states = self.states()
            now = {k: snapshot_view(v) for k, v in states.items()}
            if now == last or time.monotonic() > deadline:
                return states
            last = now


def load_harness(harness_dir: Path) -> Harness:
    root = Path(os.environ.get("HA_HARNESS_ROOT", "/tmp/ha-harness"))
    state_file = root / "state.json"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise BenchError(f"no running harness ({state_file}: {err}); start it with run.sh start") from err
    home = tuple((state.get("home") or {}).get("entities") or ())
    if not home:
        raise BenchError(f"{state_file}: the harness runs without its home (--no-home?)")
    pipeline = harness_dir / "pipeline.sh"
    if not pipeline.exists():
        raise BenchError(f"{pipeline} not found (use --harness DIR)")
    return Harness(state["ha_url"], state["token"], pipeline, Path(state["run_dir"]), home)


@dataclass(frozen=True)
class Turn:
    ok: bool
    """False when the pipeline could not run or gave no JSON (then `error` says why)."""
    speech: str = ""
    response_type: str | None = None
    processed_locally: bool | None = None
    intent_ms: float | None = None
    service_calls: tuple[Mapping[str, Any], ...] = ()
    pipeline_error: str | None = None
    error: str | None = None


def run_turn(harness: Harness, text: str, agent: str, tts: bool, settle: float) -> Turn:
    """One text turn through an Assist pipeline, via the harness's pipeline.sh."""
    argv = [str(harness.pipeline), "text", text, "--json", "--agent", agent, "--settle", str(settle)]
    if not tts:
        argv.append("--no-tts")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TURN_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return Turn(False, error=f"pipeline.sh took over {TURN_TIMEOUT:.0f} s")
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return Turn(False, error=f"pipeline.sh exit {done.returncode}, no JSON: {' | '.join(tail)}")
    summary = report.get("summary") or {}
    marks = report.get("marks") or {}
    start, end = marks.get("intent-start"), marks.get("intent-end")
    errors = [e.get("data") for e in report.get("events") or () if e.get("type") == "error"]
    if report.get("error"):
        errors.insert(0, report["error"])
    if end is None:
        why = json.dumps(errors[0]) if errors else f"no intent-end (pipeline.sh exit {done.returncode})"
        return Turn(False, service_calls=tuple(report.get("service_calls") or ()), error=why)
    return Turn(
        True,
        speech=str(summary.get("speech") or ""),
        response_type=summary.get("response_type"),
        processed_locally=summary.get("processed_locally"),
        intent_ms=None if start is None or end is None else round((end - start) * 1000, 1),
        service_calls=tuple(report.get("service_calls") or ()),
        pipeline_error=json.dumps(errors[0]) if errors else None,
    )


def switch_persona(harness: Harness, api_url: str, persona_id: str) -> str:
    """Make `persona_id` active; returns how (api or state file)."""
    body = json.dumps({"id": persona_id}).encode()
    request = urllib.request.Request(
        api_url + "/api/active", data=body, method="PUT", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT):
            how = "api"
    except urllib.error.HTTPError as err:
        raise BenchError(f"control API refused persona {persona_id!r}: {err.read().decode()[:200]}") from err
    except OSError:
        from wyoming_persona.personas.state import ActivePersonaStore

        ActivePersonaStore(harness.run_dir / "state").write(persona_id)
        how = "state file"
    time.sleep(SWITCH_WAIT)
    return how


# -- running ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    persona: str
    item: str
    set_name: str
    kind: str
    text: str
    status: str
    """pass, fail, invalid (a command already true after setup) or error (the turn failed)."""
    reasons: tuple[str, ...] = ()
    speech: str = ""
    stock: bool = False
    response_type: str | None = None
    processed_locally: bool | None = None
    intent_ms: float | None = None
    changed: dict[str, list[Any]] = field(default_factory=dict)
    home_calls: tuple[str, ...] = ()


def run_item(harness: Harness, items: ItemFile, item: Item, persona: str, args: argparse.Namespace) -> Record:
    base = {
        "persona": persona,
        "item": item.key,
        "set_name": item.set_name,
        "kind": item.kind,
        "text": item.text,
    }
    try:
        for call in (*items.reset, *item.setup):
            harness.call(call)
        before = harness.settled_states()
    except (OSError, ValueError) as err:
        return Record(**base, status="error", reasons=(f"setup: {err}",))
    if item.kind == "command":
        already = [e for e, v in item.expect.items() if "." in e and not entity_failures(e, v, before.get(e))]
        if already:
            return Record(
                **base, status="invalid", reasons=tuple(f"{e} already as expected" for e in already)
            )
    turn = run_turn(harness, item.text, args.agent, args.tts, args.settle)
    if not turn.ok:
        return Record(**base, status="error", reasons=(str(turn.error),))
    try:
        after = harness.states()
    except (OSError, ValueError) as err:
        return Record(**base, status="error", reasons=(f"reading states: {err}",), speech=turn.speech)
    result = grade(item, turn.speech, before, after, turn.service_calls)
    reasons = result.reasons + ((f"pipeline error {turn.pipeline_error}",) if turn.pipeline_error else ())
    return Record(
        **base,
        status="pass" if result.success else "fail",
        reasons=reasons,
        speech=turn.speech,
        stock=is_stock(
            turn.speech, [str((v.get("attributes") or {}).get("friendly_name", "")) for v in before.values()]
        ),
        response_type=turn.response_type,
        processed_locally=turn.processed_locally,
        intent_ms=turn.intent_ms,
        changed=changed_entities(before, after),
        home_calls=tuple(home_service_calls(turn.service_calls)),
    )


def selected(items: Sequence[Item], set_name: str, limit: int | None) -> list[Item]:
    chosen = [i for i in items if set_name == "all" or i.set_name == set_name]
    return chosen if limit is None else chosen[:limit]


def _normal(speech: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", speech.lower()).split())


def _row(persona: str, set_name: str, kind: str, rows: Sequence[Record]) -> dict[str, Any]:
    graded = [r for r in rows if r.status in ("pass", "fail", "error")]
    passed = sum(r.status == "pass" for r in graded)
    times = [r.intent_ms for r in rows if r.intent_ms is not None]
    return {
        "persona": persona,
        "set": set_name,
        "kind": kind,
        "items": len(rows),
        "graded": len(graded),
        "passed": passed,
        "success_pct": round(100 * passed / len(graded), 1) if graded else None,
        "errors": sum(r.status == "error" for r in rows),
        "invalid": sum(r.status == "invalid" for r in rows),
        "stock": sum(r.stock for r in rows),
        "processed_locally": sum(bool(r.processed_locally) for r in rows),
        "median_intent_ms": round(statistics.median(times), 1) if times else None,
    }


def summarise(records: Sequence[Record], personas: Sequence[str]) -> dict[str, Any]:
    """Per persona, set and kind: success, stock phrases, intent time; plus differing confirmations.

    `graded` counts failed turns (errors) as failures; `invalid` items (setup left the expectation
    already true) are left out."""
    table = {}
    sets = [s for s in SETS if any(r.set_name == s for r in records)]
    for persona in personas:
        for set_name in sets:
            for kind in (*KINDS, "all"):
                rows = [
                    r
                    for r in records
                    if r.persona == persona and r.set_name == set_name and kind in (r.kind, "all")
                ]
                if rows:
                    table[f"{persona}/{set_name}/{kind}"] = _row(persona, set_name, kind, rows)
    differ = None
    if len(personas) > 1:
        by_item: dict[str, dict[str, str]] = {}
        for r in records:
            if r.kind == "command" and r.status in ("pass", "fail"):
                by_item.setdefault(r.item, {})[r.persona] = _normal(r.speech)
        complete = {k: v for k, v in by_item.items() if len(v) == len(personas)}
        differ = {
            "items": len(complete),
            "all_different": sum(
                all(v.values()) and len(set(v.values())) == len(personas) for v in complete.values()
            ),
        }
    return {"table": table, "command_confirmations_differ": differ}


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def markdown(summary: Mapping[str, Any]) -> str:
    lines = [
        "| persona | set | kind | items | success | errors | invalid | stock phrase | processed locally "
        "| median intent ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["table"].values():
        success = f"{row['passed']}/{row['graded']} ({_cell(row['success_pct'])}%)" if row["graded"] else "-"
        lines.append(
            f"| {row['persona']} | {row['set']} | {row['kind']} | {row['items']} | {success} "
            f"| {row['errors']} | {row['invalid']} | {row['stock']} | {row['processed_locally']} "
            f"| {_cell(row['median_intent_ms'])} |"
        )
    differ = summary.get("command_confirmations_differ")
    if differ:
        lines.append(
            f"\nCommands where every persona spoke a different confirmation: "
            f"{differ['all_different']}/{differ['items']}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--set", choices=(*SETS, "all"), default="dev", dest="set_name")
    parser.add_argument("--agent", default="persona", help="pipeline.sh --agent: persona, home, an entity id")
    parser.add_argument("--personas", default="", help="comma-separated persona ids, one pass each")
    parser.add_argument("--limit", type=int, help="only the first N items of the set")
    parser.add_argument(
        "--tts", action="store_true", help="run the pipeline's TTS stage too (default --no-tts)"
    )
    parser.add_argument("--settle", type=float, default=1.0, help="pipeline.sh --settle seconds")
    parser.add_argument("--items", type=Path, default=ITEMS_FILE)
    parser.add_argument("--harness", type=Path, default=DEFAULT_HARNESS, help="the ha-harness folder")
    parser.add_argument("--api", default=DEFAULT_API, help="control API for --personas")
    parser.add_argument("--out", type=Path, help="JSON results (default bench/results/home-<time>.json)")
    args = parser.parse_args(argv)
    try:
        items = load_items(args.items)
        harness = load_harness(args.harness)
    except BenchError as err:
        print(f"home bench: {err}", file=sys.stderr)
        return 2
    chosen = selected(items.items, args.set_name, args.limit)
    personas = [p.strip() for p in args.personas.split(",") if p.strip()] or ["(active)"]
    started = time.strftime("%Y%m%d-%H%M%S")
    records: list[Record] = []
    switched: dict[str, str] = {}
    for persona in personas:
        if persona != "(active)":
            try:
                switched[persona] = switch_persona(harness, args.api, persona)
            except BenchError as err:
                print(f"home bench: {err}", file=sys.stderr)
                return 2
        for item in chosen:
            record = run_item(harness, items, item, persona, args)
            records.append(record)
            mark = {"pass": "PASS", "fail": "FAIL", "invalid": "INVALID", "error": "ERROR"}[record.status]
            print(
                f"[{persona}] {item.key:8} {item.kind:7} {mark:7} {item.text!r} -> {record.speech!r}"
                f"{' (stock)' if record.stock else ''} {_cell(record.intent_ms)} ms"
                f"{'  ' + '; '.join(record.reasons) if record.reasons else ''}",
                flush=True,
            )
    for call in items.reset:
        try:
            harness.call(call)
        except (OSError, ValueError):
            break
    summary = summarise(records, personas)
    print()
    print(markdown(summary))
    out = args.out or RESULTS / f"home-{started}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "started": started,
        "set": args.set_name,
        "agent": args.agent,
        "personas": personas,
        "persona_switch": switched,
        "tts": args.tts,
        "items_file": str(args.items),
        "summary": summary,
        "records": [asdict(r) for r in records],
    }
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
