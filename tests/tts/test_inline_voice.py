"""Voice settings given inline (`persona_voice`, what the studio's preview sends): spoken as given,
checked like a persona file's `voice:`, never a file path, and nothing on disk changes."""

from __future__ import annotations

from pathlib import Path

from .conftest import JOE, Client, Service, audio_of, median_f0

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


async def inline(client: Client, voice: dict, text: str = SENTENCE, streamed: bool = False):
    if streamed:
        await client.send("synthesize-start", persona_voice=voice)
        await client.send("synthesize-chunk", text=text)
        await client.send("synthesize-stop")
        events = await client.read_until("synthesize-stopped")
    else:
        await client.send("synthesize", text=text, persona_voice=voice)
        events = await client.read_until("audio-stop")
    assert events[-1].type != "error", events[-1].data
    return audio_of(events)


def files_of(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


async def test_inline_speed_and_pitch_are_heard(client: Client, tts_personas: Path) -> None:
    before = files_of(tts_personas)
    plain, rate, _ = await inline(client, {"model": JOE})
    quick, _, _ = await inline(client, {"model": JOE, "speed": 1.25})
    deep, _, _ = await inline(client, {"model": JOE, "pitch": -4.0}, streamed=True)
    assert 0.8 < len(quick) / len(plain) < 0.93  # 1.25 times as fast: 0.88 with the edge silences
    assert median_f0(deep, rate) < median_f0(plain, rate) * 0.9  # four semitones down is 0.79
    assert files_of(tts_personas) == before


async def test_inline_voice_beats_the_voice_name(client: Client) -> None:
    await client.send("synthesize", text=SENTENCE, voice={"name": "quick"}, persona_voice={"model": JOE})
    named_but_inline, _, _ = audio_of(await client.read_until("audio-stop"))
    quick, _, _ = await inline(client, {"model": JOE, "speed": 1.25})
    assert len(named_but_inline) > len(quick) * 1.08


async def test_bad_inline_voices_get_a_clear_error_and_the_connection_keeps_serving(
    service: Service, client: Client
) -> None:
    cases = [
        ({"model": JOE, "speed": 5}, "bad-voice", "persona_voice.speed: 5.0 is out of range [0.5, 2.0]"),
        ({"model": JOE, "pitch": "high"}, "bad-voice", "persona_voice.pitch: expected a number"),
        ({"model": JOE, "tempo": 1}, "bad-voice", "persona_voice.tempo: unknown key"),
        ("fast", "bad-voice", "persona_voice: expected a mapping"),
        ({"model": "/etc/hostname.onnx"}, "unknown-voice", "unknown voice '/etc/hostname.onnx'"),
        ({"model": JOE, "speaker": "nobody"}, "unknown-speaker", "persona_voice.speaker"),
    ]
    for voice, code, words in cases:
        await client.send("synthesize", text=SENTENCE, persona_voice=voice)
        events = await client.read_until("audio-stop")
        assert events[-1].type == "error", voice
        assert events[-1].data["code"] == code, events[-1].data
        assert words in events[-1].data["text"], events[-1].data["text"]
    samples, _, _ = await inline(client, {"model": JOE})
    assert len(samples) > 0
