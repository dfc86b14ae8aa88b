"""Answers worth hearing: everyday household questions to each persona, graded by the facts a right
answer must contain; refusals of harmless questions; replies that answer something else; memory.

    .venv/bin/python bench/helpful.py [--part tuned|held_out] [--personas a,b] [--limit N]
                                      [--model qwen-1.5b] [--label NAME] [--no-id]

The persona service runs alone, as `make run` starts it (`persona --model qwen-1.5b`), on free ports
with a private copy of config/personas (bench/_suite.py). Every persona answers every question of the
part, each in a new conversation, then the part's recall dialogues. Questions and facts are in
bench/helpful_questions.yaml: `tuned` may be run as often as wanted, `held_out` is run once, at the end.

Measures, per persona and overall (no LLM judges anything):
- refused: the reply matches one of REFUSALS (sorry-but, can't help/provide, don't have the ability,
  as an AI, not told, data not available, our own "Sorry, I have no answer to that.").
- facts right: the reply contains one of the item's `facts` (whole words, number words as digits, or a
  `re:` regex) and none of its `reject`.
- answers something else: not refused, no fact, and not one content word of the question (its words
  less COMMON_WORDS and QUESTION_WORDS, compared by their first STEM letters: "boiled" for "boil").
- words per reply: mean and p90.
- persona identification: as bench/persona.py does (all-MiniLM-L6-v2, leave-one-question-out nearest
  centroid, chance by shuffling labels within each question).
- recall: `tell`, `filler`, `ask` in one conversation (the reply to `ask` must contain `expect`), then
  `ask` in a new conversation (must not).

Raw replies and scores go to bench/results/helpful-<part>[-<label>].json.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _suite import REPO, bench_suite, machine, save
from persona import (
    PERMUTATIONS,
    WARM_UP,
    _new_id,
    accuracy,
    ask,
    embed,
    ensure_embedder,
    name_in,
    nearest_centroid,
    normalised,
    percentile,
    permutation_chance,
    switch_persona,
    words,
)

from wyoming_persona.agent.leak_guard import COMMON_WORDS

DEFAULT_QUESTIONS = REPO / "bench" / "helpful_questions.yaml"
PARTS = ("tuned", "held_out", "held_out2")
STEM = 5
"""Content words match by their first letters: "boil" / "boiled", "mountain" / "mountains"."""
_QUESTION_WORDS = """good best way ways make makes made get know usually really thing things give tell
    want need help please quick long many much often okay ok think say said called call use like should
    could would can might there today anything something"""
QUESTION_WORDS = frozenset(_QUESTION_WORDS.split())
"""Words of a question that say nothing about its topic."""

REFUSALS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (label, re.compile(pattern, re.IGNORECASE))
    for label, pattern in (
        ("sorry but", r"\b(?:i['’]m|i am) (?:very |so )?sorry,? but\b"),
        (
            "can't help",
            r"\bi (?:can ?not|can['’]t|am unable to|['’]m unable to|am not able to|['’]m not able to"
            r"|won['’]t be able to|am not allowed to|['’]m not allowed to) (?:assist|help|provide|answer"
            r"|give|share|do that|tell|discuss|comply|fulfill|offer|say)",
        ),
        (
            "don't have the ability",
            r"\bi (?:don['’]t|do not) have (?:the ability|the capability|access|any information"
            r"|information|real[- ]time|personal (?:preferences|opinions|feelings|experiences)"
            r"|(?:any )?(?:preferences|opinions|feelings))",
        ),
        ("beyond me", r"\b(?:beyond|outside) (?:my|the) (?:capabilities|abilities|scope|knowledge)"),
        ("as an AI", r"\bas an? (?:ai|artificial intelligence|language model|large language model)\b"),
        ("just a program", r"\bi['’]?m (?:just|only) an? (?:ai|language model|program|computer)\b"),
        ("not told", r"\b(?:haven['’]t|have not|wasn['’]t|was not|weren['’]t|not been) (?:told|given)\b"),
        (
            "data not available",
            r"\b(?:data|information|preference|details?)s? (?:is |was |are |were )?(?:not |un)"
            r"(?:available|provided|known)\b",
        ),
        ("don't know", r"\bi (?:don['’]t|do not) know\b"),
        ("no answer", r"\bsorry, i have no answer to that\b"),
    )
)
"""Phrases that refuse or dodge a harmless question (the issue's: "I'm sorry, but I can't assist with
that.", "I don't have the ability to provide information about sailing ships.")."""


# -- questions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    category: str
    text: str
    facts: tuple[str, ...]
    reject: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recall:
    tell: str
    filler: str
    ask: str
    expect: str


@dataclass(frozen=True)
class Part:
    items: tuple[Item, ...]
    recall: tuple[Recall, ...]


def parse_part(data: object, part: str, where: str = "questions") -> Part:
    """One part of the question file; a ValueError names what is wrong."""
    if not isinstance(data, dict) or part not in data:
        raise ValueError(f"{where}: no part {part!r}")
    items = []
    for index, raw in enumerate(data[part] or ()):
        at = f"{where}: {part}[{index}]"
        if not isinstance(raw, dict) or not str(raw.get("q") or "").strip():
            raise ValueError(f"{at}: needs a non-empty 'q'")
        facts = tuple(str(f) for f in raw.get("facts") or ())
        if not facts or not raw.get("cat"):
            raise ValueError(f"{at}: needs 'cat' and 'facts'")
        for fact in (*facts, *(str(r) for r in raw.get("reject") or ())):
            if fact.startswith("re:"):
                re.compile(fact[3:])
        reject = tuple(str(r) for r in raw.get("reject") or ())
        items.append(Item(str(raw["cat"]), str(raw["q"]).strip(), facts, reject))
    recall = []
    for index, raw in enumerate(((data.get("recall") or {}).get(part)) or ()):
        if not isinstance(raw, dict) or not all(raw.get(k) for k in ("tell", "filler", "ask", "expect")):
            raise ValueError(f"{where}: recall.{part}[{index}]: needs tell, filler, ask and expect")
        recall.append(Recall(str(raw["tell"]), str(raw["filler"]), str(raw["ask"]), str(raw["expect"])))
    if not items:
        raise ValueError(f"{where}: {part} has no questions")
    return Part(tuple(items), tuple(recall))


def load_part(path: Path, part: str) -> Part:
    return parse_part(yaml.safe_load(path.read_text(encoding="utf-8")), part, str(path))


def limited(items: Sequence[Item], limit: int | None) -> tuple[Item, ...]:
    """The first `limit` items of each category (all when None)."""
    if limit is None:
        return tuple(items)
    seen: dict[str, int] = {}
    kept = []
    for item in items:
        seen[item.category] = seen.get(item.category, 0) + 1
        if seen[item.category] <= limit:
            kept.append(item)
    return tuple(kept)


# -- scoring (pure) ---------------------------------------------------------------------------------


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    n = len(needle)
    return n > 0 and any(list(haystack[i : i + n]) == list(needle) for i in range(len(haystack) - n + 1))


def _forms(word: str) -> set[str]:
    """A word and its plural or singular ("crayon" / "crayons", "tomatoes" / "tomato")."""
    if word.isdigit():
        return {word}
    forms = {word, f"{word}s", f"{word}es"}
    if word.endswith("es"):
        forms.add(word[:-2])
    if word.endswith("s"):
        forms.add(word[:-1])
    return forms


def matches(reply: str, fact: str) -> bool:
    """A fact is in the reply: a `re:` regex searched in the lowercased reply, else whole words (a
    one-word fact also as its plural or singular)."""
    if fact.startswith("re:"):
        return re.search(fact[3:], reply.lower().replace("’", "'")) is not None
    tokens, needle = normalised(reply), normalised(fact)
    if len(needle) == 1:
        return bool(_forms(needle[0]) & set(tokens))
    return _contains(tokens, needle)


def fact_right(reply: str, item: Item) -> bool:
    if any(matches(reply, r) for r in item.reject):
        return False
    return any(matches(reply, f) for f in item.facts)


def refusal(reply: str) -> str | None:
    """The label of the first refusal phrase in the reply, or None."""
    for label, pattern in REFUSALS:
        if pattern.search(reply.replace("’", "'")):
            return label
    return None


def content_words(question: str) -> set[str]:
    """The question's topic words, by their first STEM letters."""
    plain = {w.replace("'", "") for w in words(question)}
    return {w[:STEM] for w in plain if w not in COMMON_WORDS and w not in QUESTION_WORDS and len(w) > 2}


def off_topic(reply: str, item: Item) -> bool:
    """Answers something else: not a refusal, no fact, and none of the question's content words."""
    if refusal(reply) is not None or fact_right(reply, item):
        return False
    said = {w.replace("'", "")[:STEM] for w in words(reply)}
    return not (content_words(item.text) & said)


# -- running ----------------------------------------------------------------------------------------

_MARK = re.compile("[\u200b\u200c]")
"""The persona mark before every reply (speakable.persona_mark): invisible, not the model's words."""


@dataclass
class Record:
    persona: str
    kind: str
    """question, or recall-tell / recall-filler / recall-ask / recall-fresh."""
    category: str
    question: str
    reply: str
    words: int
    first_text_ms: float | None
    refused: str | None = None
    fact_right: bool | None = None
    off_topic: bool | None = None
    expect: str | None = None
    expect_said: bool | None = None
    predicted: str | None = None


async def run(
    model: str, part: Part, items: Sequence[Item], persona_ids: Sequence[str] | None
) -> tuple[list[Record], list[str]]:
    from wyoming_persona.agent.commands import recognize
    from wyoming_persona.personas import load_folder

    records: list[Record] = []
    extra = {"persona": ("--backend", "embedded", "--model", model)}
    async with bench_suite(("persona",), extra) as suite:
        services, root = suite.addresses, suite.root
        personas = load_folder(root / "personas")
        chosen = list(persona_ids or personas)
        unknown = [p for p in chosen if p not in personas]
        if unknown:
            raise SystemExit(f"unknown personas {unknown}; known: {list(personas)}")
        texts = [i.text for i in items] + [t for r in part.recall for t in (r.tell, r.filler, r.ask)]
        commands = [t for t in texts if recognize(t, personas.values()) is not None]
        if commands:
            raise SystemExit(f"these are voice commands, not questions for the model: {commands}")
        for pid in chosen:  # the service's background warm-up of every persona prompt is done after this
            await switch_persona(services, root / "state", pid)
            await ask(services, WARM_UP, _new_id("bench-warm"))

        async def turn(pid: str, kind: str, text: str, talk: str, item: Item | None = None) -> Record:
            answer = await ask(services, text, talk)
            answer.text = _MARK.sub("", answer.text)
            if answer.persona_id != pid:
                raise RuntimeError(f"asked {pid!r} but {answer.persona_id!r} answered: {text!r}")
            record = Record(
                pid, kind, item.category if item else "recall", text, answer.text,
                len(words(answer.text)),
                None if answer.first_text is None else round(answer.first_text * 1000),
            )  # fmt: skip
            if item is not None:
                record.refused = refusal(answer.text)
                record.fact_right = fact_right(answer.text, item)
                record.off_topic = off_topic(answer.text, item)
            records.append(record)
            flags = "".join(
                (
                    " REFUSED" if record.refused else "",
                    " WRONG" if record.fact_right is False else "",
                    " ELSE" if record.off_topic else "",
                )
            )
            print(f"  {pid:<9} {text[:44]!r:<47} -> {answer.text[:110]!r}{flags}", flush=True)
            return record

        for pid in chosen:
            await switch_persona(services, root / "state", pid)
            print(f"[{model}] {pid}", flush=True)
            for item in items:
                await turn(pid, "question", item.text, _new_id(), item)
            for dialogue in part.recall:
                talk = _new_id("bench-recall")
                await turn(pid, "recall-tell", dialogue.tell, talk)
                await turn(pid, "recall-filler", dialogue.filler, talk)
                for kind, conversation in (("recall-ask", talk), ("recall-fresh", _new_id())):
                    record = await turn(pid, kind, dialogue.ask, conversation)
                    record.expect = dialogue.expect
                    record.expect_said = name_in(record.reply, dialogue.expect)
    return records, chosen


def identify(records: list[Record], classes: list[str]) -> dict:
    """Leave-one-question-out nearest centroid over the question replies, as bench/persona.py does."""
    scored = [r for r in records if r.kind == "question"]
    if len(classes) < 2 or not scored:
        return {}
    vectors = embed([r.reply for r in scored])
    truth = [r.persona for r in scored]
    groups = [r.question for r in scored]
    predicted = nearest_centroid(vectors, truth, groups, classes)
    for record, guess in zip(scored, predicted, strict=True):
        record.predicted = guess
    chance = permutation_chance(vectors, truth, groups, classes)
    pairs = list(zip(truth, predicted, strict=True))
    per = {c: accuracy([t for t, _ in pairs if t == c], [p for t, p in pairs if t == c]) for c in classes}
    return {
        "accuracy": accuracy(truth, predicted),
        "per_persona": per,
        "chance_mean": None if chance is None else chance[0],
        "chance_p95": None if chance is None else chance[1],
    }


def summarise(records: Sequence[Record]) -> dict:
    asked = [r for r in records if r.kind == "question"]
    counts = [r.words for r in asked]
    recall = [r for r in records if r.kind == "recall-ask"]
    fresh = [r for r in records if r.kind == "recall-fresh"]
    return {
        "questions": len(asked),
        "refused": sum(r.refused is not None for r in asked),
        "facts_right": sum(bool(r.fact_right) for r in asked),
        "off_topic": sum(bool(r.off_topic) for r in asked),
        "words_mean": round(statistics.fmean(counts), 1) if counts else None,
        "words_p90": percentile(counts, 0.9),
        "recalled": sum(bool(r.expect_said) for r in recall),
        "recall": len(recall),
        "not_carried": sum(not r.expect_said for r in fresh),
        "fresh": len(fresh),
    }


def _frac(n: int, total: int) -> str:
    return "-" if not total else f"{n}/{total} ({n / total:.0%})"


def table(records: Sequence[Record], classes: Sequence[str], ident: dict) -> str:
    head = ["persona", "refused", "facts right", "answers something else", "words mean/p90", "id (LOQO)",
            "recalled", "not carried over"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label in [*classes, "**all**"]:
        rows = [r for r in records if label == "**all**" or r.persona == label]
        s = summarise(rows)
        acc = ident.get("accuracy") if label == "**all**" else (ident.get("per_persona") or {}).get(label)
        lines.append("| " + " | ".join([
            label, _frac(s["refused"], s["questions"]), _frac(s["facts_right"], s["questions"]),
            _frac(s["off_topic"], s["questions"]), f"{s['words_mean']}/{s['words_p90']}",
            "-" if acc is None else f"{acc:.2f}", _frac(s["recalled"], s["recall"]),
            _frac(s["not_carried"], s["fresh"]),
        ]) + " |")  # fmt: skip
    if ident:
        lines.append(
            f"\nid chance (labels shuffled within each question, {PERMUTATIONS}x): mean "
            f"{ident['chance_mean']:.2f}, p95 {ident['chance_p95']:.2f}"
        )
    return "\n".join(lines)


def rescore(path: Path, part: Part) -> tuple[list[Record], list[str], dict]:
    """The records of an earlier run graded again with the current rules (its identification kept)."""
    import json

    saved = json.loads(path.read_text())
    items = {item.text: item for item in part.items}
    records = [Record(**row) for row in saved["replies"]]
    for record in records:
        record.reply = _MARK.sub("", record.reply)
        item = items.get(record.question) if record.kind == "question" else None
        if item is not None:
            record.refused = refusal(record.reply)
            record.fact_right = fact_right(record.reply, item)
            record.off_topic = off_topic(record.reply, item)
        elif record.expect is not None:
            record.expect_said = name_in(record.reply, record.expect)
    classes = list(dict.fromkeys(r.persona for r in records))
    return records, classes, saved.get("identification") or {}


async def bench(args: argparse.Namespace) -> int:
    part = load_part(args.questions, args.part)
    if args.rescore:
        records, classes, ident = rescore(args.rescore, part)
        if not ident and not args.no_id:
            ident = await asyncio.to_thread(identify, records, classes)
        print(table(records, classes, ident))
        return 0
    items = limited(part.items, args.limit)
    persona_ids = [p.strip() for p in args.personas.split(",") if p.strip()] if args.personas else None
    if not args.no_id:
        await asyncio.to_thread(ensure_embedder)
    records, classes = await run(args.model, part, items, persona_ids)
    ident = {} if args.no_id else await asyncio.to_thread(identify, records, classes)
    name = f"helpful-{args.part}" + (f"-{args.label}" if args.label else "")
    path = save(name, {
        "part": args.part, "model": args.model, "limit": args.limit, "questions_file": str(args.questions),
        "summary": summarise(records), "per_persona": {p: summarise([r for r in records if r.persona == p])
                                                        for p in classes},
        "identification": ident, "replies": [asdict(r) for r in records],
    })  # fmt: skip
    print(f"\nbench/helpful on {machine()}: {args.part}, {len(items)} questions per persona, {args.model}")
    print(table(records, classes, ident))
    print(f"\nsaved {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--part", choices=PARTS, default="tuned")
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--model", default="qwen-1.5b", help="the embedded model (make run: qwen-1.5b)")
    parser.add_argument("--personas", default="", help="only these personas, comma-separated")
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions per category")
    parser.add_argument("--label", default="", help="added to the results file name (before, after, ...)")
    parser.add_argument("--no-id", action="store_true", help="skip persona identification (no embedder)")
    parser.add_argument("--rescore", type=Path, help="grade the replies of a saved run again; run nothing")
    args = parser.parse_args()
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    return asyncio.run(bench(args))


if __name__ == "__main__":
    raise SystemExit(main())
