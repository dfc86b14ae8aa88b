"""A sentence spoken in pieces pauses where its text pauses, and nowhere else (issue 23: "Boil an egg
for, about 5 minutes" was heard with a comma's pause the model never wrote)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wyoming_persona.tts.handler import ResponseSettings

from .conftest import JOE, Client, audio_of, speak, start_service
from .test_server import longest_inner_silence

SENTENCE = "Boil an egg for about five minutes in the pot."
PHRASE_CUT = ("Boil an egg for", " about five minutes in the pot.")
"""How the agent streams this reply when it sends the first phrase early: no comma between the two."""


async def stream(client: Client, chunks: tuple[str, ...]) -> tuple[np.ndarray, int]:
    await client.send("synthesize-start", voice={"name": JOE})
    for chunk in chunks:
        await client.send("synthesize-chunk", text=chunk)
    await client.send("synthesize-stop")
    samples, rate, _ = audio_of(await client.read_until("synthesize-stopped"))
    return samples, rate


async def test_a_phrase_cut_sounds_like_the_sentence_spoken_whole(
    tts_personas: Path, state_dir: Path, voices_dir: Path, client: Client
) -> None:
    cut, rate = await stream(client, PHRASE_CUT)
    whole_service = await start_service(
        tts_personas, state_dir, voices_dir, settings=ResponseSettings(split_first_clause=False)
    )
    whole_client = await Client.connect(whole_service.port)
    try:
        whole, _, _ = await speak(whole_client, SENTENCE, JOE)  # one Piper call: no join at all
    finally:
        await whole_client.close()
        await whole_service.server.close()
    # Piper is deterministic here (noise 0): joined with a comma's pause, the cut was 0.15 s of silence
    # and 3.8% longer than the whole sentence (0.14 s, its own longest pause); joined without, 0.13 s, 0.6%.
    assert longest_inner_silence(cut, rate) <= longest_inner_silence(whole, rate) + 0.005, "no pause added"
    assert len(cut) / len(whole) < 1.02


async def test_a_comma_the_text_has_keeps_a_pause(client: Client) -> None:
    comma, rate = await stream(client, ("Boil an egg,", " for about five minutes in the pot."))
    cut, _ = await stream(client, PHRASE_CUT)
    assert longest_inner_silence(comma, rate) >= 0.1
    assert len(comma) > len(cut)
