"""What a persona sends the model: a short system prompt, then its examples as real chat turns."""

from __future__ import annotations

from pathlib import Path

from wyoming_persona.personas import build_system_prompt, load_folder, persona_messages

MAX_PROMPT_WORDS = 130
"""A small model follows a few lines and parrots a long rule list: keep the prompt this short. (90 until
the shared lines about everyday answers, which bench/helpful.py measured: no refusals, more facts.)"""


def test_prompt_is_identity_first_then_style_rules_and_speaking(personas_dir: Path) -> None:
    pirate = load_folder(personas_dir)["pirate"]
    prompt = build_system_prompt(pirate)
    spec = pirate.spec.prompt
    lines = prompt.splitlines()
    assert lines[0] == spec.identity
    for line in (*spec.style, *spec.rules):
        assert line in lines, line
    assert "English" in lines[-1] and "spoken aloud" in lines[-1]
    assert "- " not in prompt and "Rules" not in prompt, "no bullet list for the model to read out"


def test_examples_are_chat_turns_not_prompt_text(personas_dir: Path) -> None:
    for persona in load_folder(personas_dir).values():
        prompt = build_system_prompt(persona)
        messages = persona_messages(persona)
        assert messages[0] == {"role": "system", "content": prompt}
        examples = persona.spec.prompt.examples
        assert len(examples) >= 3, persona.id
        assert messages[1:] == [
            turn
            for e in examples
            for turn in ({"role": "user", "content": e.user}, {"role": "assistant", "content": e.assistant})
        ]
        for example in examples:
            assert example.assistant not in prompt and example.user not in prompt
        assert "User:" not in prompt and "Asked" not in prompt


def test_shipped_prompts_are_short(personas_dir: Path) -> None:
    for persona in load_folder(personas_dir).values():
        words = len(build_system_prompt(persona).split())
        assert words <= MAX_PROMPT_WORDS, (persona.id, words)


def test_prompt_names_the_reply_language(tmp_path: Path) -> None:
    (tmp_path / "hans.yaml").write_text(
        "name: Hans\nlanguage: de_DE\nprompt:\n  identity: Du bist Hans.\n", encoding="utf-8"
    )
    hans = load_folder(tmp_path)["hans"]
    prompt = build_system_prompt(hans)
    assert prompt.startswith("Du bist Hans.\n") and "reply in German" in prompt
    assert persona_messages(hans) == [{"role": "system", "content": prompt}]


def test_every_shipped_persona_builds_a_distinct_prompt(personas_dir: Path) -> None:
    prompts = {build_system_prompt(p) for p in load_folder(personas_dir).values()}
    assert len(prompts) == len(load_folder(personas_dir))


SIGNATURES = {
    "pirate": ("matey", "arr", "aye", "ahoy", "hearty"),
    "butler": ("sir", "very good", "certainly", "i shall"),
    "coach": ("champ", "let's go", "you've got this"),
    "robot": ("affirmative", "negative", "processing", "systems"),
}


def test_each_persona_has_its_own_words(personas_dir: Path) -> None:
    """Every example answer carries its persona's signature words and no other persona's."""
    personas = load_folder(personas_dir)
    for persona_id, persona in personas.items():
        for example in persona.spec.prompt.examples:
            answer = example.assistant.lower()
            own = SIGNATURES.get(persona_id, ())
            assert not own or any(word in answer for word in own), (persona_id, answer)
            for other, words in SIGNATURES.items():
                if other != persona_id:
                    assert not any(f" {w}" in f" {answer}" for w in words), (persona_id, other, answer)
