"""The system prompt carries the persona and the rules every spoken assistant needs."""

from __future__ import annotations

from pathlib import Path

from wyoming_persona.personas import build_system_prompt, load_folder


def test_prompt_has_identity_style_rules_examples_and_spoken_rules(personas_dir: Path) -> None:
    pirate = load_folder(personas_dir)["pirate"]
    prompt = build_system_prompt(pirate)
    spec = pirate.spec.prompt
    assert prompt.startswith(spec.identity)
    for line in (*spec.style, *spec.rules):
        assert f"- {line}" in prompt
    for example in spec.examples:
        assert f'- Asked "{example.user}", you say: "{example.assistant}"' in prompt
    assert "User:" not in prompt, "a transcript-style example makes small models write the user's lines"
    lowered = prompt.lower()
    for must in ("markdown", "emoji", "urls", "numbers", "short", "read aloud"):
        assert must in lowered, must
    assert "Always reply in English." in prompt


def test_prompt_names_the_reply_language(tmp_path: Path) -> None:
    (tmp_path / "hans.yaml").write_text(
        "name: Hans\nlanguage: de_DE\nprompt:\n  identity: Du bist Hans.\n", encoding="utf-8"
    )
    prompt = build_system_prompt(load_folder(tmp_path)["hans"])
    assert "Always reply in German." in prompt
    assert "Examples" not in prompt and "How you talk" not in prompt


def test_every_shipped_persona_builds_a_distinct_prompt(personas_dir: Path) -> None:
    prompts = {build_system_prompt(p) for p in load_folder(personas_dir).values()}
    assert len(prompts) == len(load_folder(personas_dir))
