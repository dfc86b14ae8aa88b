"""What a voice satellite user waits for, through a real Home Assistant: the HA harness's satellite.

    H=../shared/ha-harness
    $H/run.sh start . --persona-args "--model qwen-1.5b --speculation-tts-uri tcp://127.0.0.1:11310" \\
        --asr-args "--beam-size 1 --endpointing-ms 700 --smart-turn --speculation-uri tcp://127.0.0.1:11320"
    .venv/bin/python bench/satellite.py --set chat --personas pirate,butler
    .venv/bin/python bench/satellite.py --set commands --agent home --stt stt.X --tts tts.Y   # HA's own
    $H/run.sh stop

Each question is asked once through `satellite.sh ask ... --json` (HA's own `wyoming` satellite, its
own VAD, its pipeline), the persona switched through the control API. Every time is from the end of
speech: `voice-stopped` (HA's VAD), `transcript`, `synthesize` (the reply text is ready), `first-audio`,
and `after voice-stopped` = first-audio - voice-stopped, what the stack adds once HA has decided the
user stopped. `--vad aggressive|default|relaxed` sets the satellite's "Finished speaking detection"
(its `select.*_vad_sensitivity`) first and puts it back to default after.

The question sets were written for issue 20 and never used before: HA's TTS cache answers a sentence
it spoke before at once, so every run needs questions HA has not heard (a second run of a set measures
HA's cache, not the stack).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _suite import machine, save

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO.parent / "shared" / "ha-harness"
STATE = Path("/tmp/ha-harness/state.json")
MARKS = ("voice-stopped", "transcript", "synthesize", "first-audio", "audio-stop")

SETS: dict[str, tuple[str, ...]] = {
    "chat": (
        "What is the largest desert in the world?",
        "How many strings does a violin have?",
        "What do sea otters hold while they sleep?",
        "Which planet has the most moons?",
        "What is a good snack before a long walk?",
        "How many days are there in a leap year?",
        "What colour do you get when you mix blue and yellow?",
        "Who wrote the story of Peter Pan?",
        "What is the boiling point of water in Fahrenheit?",
        "Can you name a famous bridge in San Francisco?",
    ),
    "chat2": (
        "What is the capital city of Portugal?",
        "How many hours are there in a week?",
        "What animal is known as the king of the jungle?",
        "Which ocean lies between Africa and Australia?",
        "What is a healthy drink in the morning?",
        "How many sides does a hexagon have?",
        "Who invented the telephone?",
        "What fruit is dried to make raisins?",
        "Which country is famous for maple syrup?",
        "How long is a marathon in kilometres?",
    ),
    "chat3": (
        "What is the fastest land animal?",
        "How many players are on a football team?",
        "What do bees collect from flowers?",
        "Which metal is liquid at room temperature?",
        "What is a nice name for a puppy?",
        "How many minutes are in two hours?",
        "What is the largest planet in our solar system?",
        "Who painted the ceiling of the Sistine Chapel?",
        "What fruit is used to make cider?",
        "Which bird is a symbol of peace?",
    ),
    "chat4": (
        "What is the coldest continent on Earth?",
        "How many wheels does a tricycle have?",
        "What do caterpillars turn into?",
        "Which gas do plants breathe in?",
        "What is a good game for a rainy afternoon?",
        "How many weeks are there in a year?",
        "What is the longest river in South America?",
        "Who wrote the play Romeo and Juliet?",
        "What is the national animal of Scotland?",
        "Which instrument has black and white keys?",
    ),
    "chat5": (
        "What is the smallest ocean in the world?",
        "How many legs does an octopus have?",
        "What do pandas mostly eat?",
        "Which planet is known as the red planet?",
        "What is a fun thing to do on a snowy day?",
        "How many seconds are there in a minute?",
        "What is the highest waterfall in the world?",
        "Who discovered penicillin?",
        "What is the hardest natural substance?",
        "Which country gave the Statue of Liberty to America?",
    ),
    "chat6": (
        "What is the capital city of Norway?",
        "How many strings does a guitar usually have?",
        "What do koalas like to eat?",
        "Which is the closest star to the Earth?",
        "What is a good present for a grandmother?",
        "How many months have thirty one days?",
        "What is the deepest lake in the world?",
        "Who was the first person to walk on the moon?",
        "What colour are the leaves of a maple in autumn?",
        "Which animal has the longest neck?",
    ),
    "chat7": (
        "What is the capital city of Canada?",
        "How many legs does a spider have?",
        "What do cows drink when they are thirsty?",
        "Which planet is closest to the sun?",
        "What is a good book for a long train ride?",
        "How many days are there in a week?",
        "What is the tallest mountain in Africa?",
        "Who wrote the novel Moby Dick?",
        "What colour is a ripe banana?",
        "Which animal is known for carrying its house on its back?",
    ),
    "chat8": (
        "What is the capital city of Egypt?",
        "How many teeth does an adult have?",
        "What do squirrels bury in the autumn?",
        "Which planet has the biggest rings?",
        "What is a good breakfast before school?",
        "How many centimetres are in a metre?",
        "What is the largest island in the world?",
        "Who composed the Four Seasons?",
        "What colour is the flag of Japan?",
        "Which insect makes honey?",
    ),
    "chat9": (
        "What is the capital city of Kenya?",
        "How many teeth does an adult human have?",
        "What do frogs eat?",
        "Which planet spins on its side?",
        "What is a good hobby for a quiet evening?",
        "How many years are there in a century?",
        "What is the largest country in South America?",
        "Who wrote the Odyssey?",
        "What colour is a flamingo?",
        "Which animal is the tallest in the world?",
    ),
    "chat10": (
        "What is the capital of Norway?",
        "What do pandas eat?",
        "Which ocean is the deepest?",
        "What is a good game for a family evening?",
        "How many pieces does each player have in chess?",
        "Are any two snowflakes the same?",
        "How long is the Great Wall of China?",
        "What colour are bananas when they are ripe?",
        "Which bird cannot fly but runs very fast?",
        "How many bones are in a cat's body?",
    ),
    "chat11": (
        "What is the capital of Portugal?",
        "Are wild mushrooms safe to eat?",
        "What is the longest river in Africa?",
        "Which country is Mount Fuji in?",
        "Do you prefer tea or coffee?",
        "How many sides does an octagon have?",
        "Why can owls turn their heads so far?",
        "How tall does a giraffe grow?",
        "How big is the Sahara desert?",
        "Which animal sleeps upside down?",
    ),
    "chat12": (
        "What is the capital of Greece?",
        "Why are flamingos pink?",
        "How many legs does a crab have?",
        "What language do people speak in Denmark?",
        "When did people first land on the moon?",
        "Why does Mars look red?",
        "How long can a pumpkin keep?",
        "Where is the Amazon rainforest?",
        "How do you stay safe in a thunderstorm?",
        "What is an igloo made of?",
    ),
    "chat13": (
        "What is the capital of Finland?",
        "Why do cows chew all day?",
        "How does a lighthouse work?",
        "What do squirrels eat in winter?",
        "Who built the first airplane?",
        "Why is the grass green?",
        "How long should I boil rice?",
        "Where do polar bears live?",
        "What is a good name for a pet hamster?",
        "How do dolphins sleep?",
    ),
    "chat14": (
        "What is the capital of Chile?",
        "Why do cats sleep so much?",
        "How many legs does a snail have?",
        "What do flamingos eat?",
        "Who discovered gravity?",
        "Why is the sea blue?",
        "How long should I toast bread?",
        "Where do camels live?",
        "What is a good name for a pet parrot?",
        "What causes hiccups?",
    ),
    "chat15": (
        "What is the capital of Peru?",
        "Why do roosters crow in the morning?",
        "How many players are on a soccer team?",
        "What do tadpoles turn into?",
        "Who painted the Starry Night?",
        "Why do we yawn?",
        "How long should I rest a steak?",
        "Where does chocolate come from?",
        "What is a good name for a pet turtle?",
        "How do birds know where to fly in winter?",
    ),
    "chat16": (
        "What is the biggest desert in the world?",
        "How many teeth does an adult have?",
        "Why do onions make us cry?",
        "Who wrote Romeo and Juliet?",
        "What is a good snack before bed?",
        "What do pandas like to eat?",
        "Which planet has the most moons?",
        "Why do cats like boxes?",
        "How long does it take to hard boil an egg?",
        "What is the fastest land animal?",
    ),
    "commands": (
        "Turn on the bedroom light.",
        "Switch off the coffee machine.",
        "Turn on the kitchen light.",
        "Turn off the bedroom light.",
    ),
}
"""Written for issue 20: no other bench, test or persona example of the project uses them."""


def harness_state() -> dict:
    return json.loads(STATE.read_text())


def switch(persona_id: str) -> None:
    """Make `persona_id` the active persona through the harness's control API."""
    api = harness_state().get("api_url") or "http://127.0.0.1:11340"
    body = json.dumps({"id": persona_id}).encode()
    request = urllib.request.Request(
        api + "/api/active", data=body, method="PUT", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def set_vad(sensitivity: str) -> None:
    """The satellite's "Finished speaking detection" (HA's select entity of the satellite's device)."""
    satellite = harness_state().get("satellite") or {}
    select = next(
        (e for e in satellite.get("entities", []) if "vad_sensitivity" in e or "finished" in e), None
    )
    if select is None:
        raise SystemExit("the harness's satellite has no VAD sensitivity select yet: ask one question first")
    subprocess.run(
        [
            str(HARNESS / "pipeline.sh"),
            "call",
            "select.select_option",
            f"entity_id={select}",
            f"option={sensitivity}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def ask(question: str, args: argparse.Namespace) -> dict:
    command = [str(HARNESS / "satellite.sh"), "ask", question, "--json", "--timeout", "90"]
    for flag in ("agent", "voice", "stt", "tts"):
        if getattr(args, flag):
            command += [f"--{flag}", getattr(args, flag)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    try:
        rounds = json.loads(done.stdout)["rounds"]
    except (ValueError, KeyError) as err:
        return {"error": f"satellite.sh: {err}: {done.stderr[-400:]}"}
    return rounds[0]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set", default="chat", choices=sorted(SETS))
    parser.add_argument("--personas", default="", help="comma-separated persona ids, switched in turn")
    parser.add_argument("--agent", default="persona")
    parser.add_argument("--voice", default="active")
    parser.add_argument("--stt")
    parser.add_argument("--tts")
    parser.add_argument("--vad", choices=("default", "aggressive", "relaxed"))
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--label", default="", help="a name for this run in the saved results")
    args = parser.parse_args()
    if args.voice == "none":
        args.voice = None
    questions = SETS[args.set][: args.limit or None]
    personas = [p for p in args.personas.split(",") if p] or [None]
    runs = []
    if args.vad:
        set_vad(args.vad)
    try:
        for persona in personas:
            if persona:
                switch(persona)
            for question in questions:
                result = ask(question, args)
                result.update(persona=persona, question=question)
                if "voice-stopped" in result and "first-audio" in result:
                    result["after voice-stopped"] = result["first-audio"] - result["voice-stopped"]
                runs.append(result)
                shown = "  ".join(f"{k} {result[k]}" for k in (*MARKS, "after voice-stopped") if k in result)
                print(f"{persona or '-':<9} {question[:44]:<46} {shown}", flush=True)
                print(
                    f"{'':<9} heard {result.get('heard')!r} -> {str(result.get('reply'))[:70]!r}", flush=True
                )
                time.sleep(1.0)
    finally:
        if args.vad and args.vad != "default":
            set_vad("default")
    summary = {}
    for key in (*MARKS, "after voice-stopped"):
        values = [r[key] for r in runs if key in r]
        if values:
            summary[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    print(
        f"\nbench/satellite on {machine()}: {len(runs)} turns "
        f"({args.set}, agent {args.agent}, vad {args.vad or 'as set'})"
    )
    for key, value in summary.items():
        print(f"  {key:<22} median {value['median']:>6} ms   ({value['min']}-{value['max']})")
    failed = [r for r in runs if "first-audio" not in r]
    if failed:
        print(f"  {len(failed)} turns without reply audio: {[r.get('error') for r in failed]}")
    name = f"satellite-{args.label or args.set}"
    print(f"saved {save(name, {'args': vars(args), 'summary': summary, 'runs': runs})}")
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
