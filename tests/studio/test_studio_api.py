"""The studio's HTTP side on a real aiohttp server: sessions and who may write, edits that keep the user's
file, bad input refused at its field with nothing lost, and preview and chat through real services."""

from __future__ import annotations

import base64
import difflib
import io
import json
import re
import shutil
import wave
from pathlib import Path

import pytest
from agent.conftest import persona_server
from aiohttp import web
from tts.conftest import start_service

from wyoming_persona.agent.backends import OllamaSettings
from wyoming_persona.agent.backends.ollama import OllamaChatBackend
from wyoming_persona.api import ApiSettings, ServiceTarget, make_app
from wyoming_persona.api.session import COOKIE, HEADER
from wyoming_persona.personas import PersonaManager
from wyoming_persona.personas.loader import MAX_FILE_BYTES, load_folder
from wyoming_persona.pins import PinnedAgent

from .conftest import Studio, page_token

TOKEN = "studio-test-token"
NEW_PERSONA = {
    "name": "Sunny Side",
    "description": "A morning person.",
    "language": "en",
    "greeting": "Good morning, sunshine!",
    "aliases": ["sunny side"],
    "prompt": {
        "identity": "You are Sunny Side, who loves mornings.",
        "style": ["You are cheerful.", "You mention the sun."],
        "rules": [],
        "examples": [{"user": "Hi", "assistant": "Morning, sunshine!"}],
    },
    "voice": {"model": "en_US-joe-medium", "speaker": None, "speed": 1.2, "pitch": 0.0, "volume": 1.0},
    "llm": {
        "model": None,
        "temperature": None,
        "top_p": None,
        "repeat_penalty": None,
        "max_reply_tokens": None,
    },
}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


async def load(studio: Studio, persona_id: str) -> dict:
    response = await studio.call("GET", f"/api/studio/personas/{persona_id}")
    assert response.status == 200, await response.text()
    return await response.json()


# -- the page and who may write -------------------------------------------------------------------
async def test_the_page_uses_relative_urls_only_and_sets_a_strict_session(studio) -> None:
    s = await studio()
    response = await s.client.get("/")
    page = await response.text()
    js = await (await s.client.get("/studio/studio.js")).text()
    css = await s.client.get("/studio/studio.css")
    assert css.status == 200 and css.content_type == "text/css"
    # Behind HA's ingress the page lives at /api/hassio_ingress/<token>/: an absolute URL would miss it.
    assert 'href="studio/studio.css"' in page and 'src="studio/studio.js"' in page
    assert not re.search(r'(?:href|src|action)="/', page)
    assert not re.search(r"""(?:fetch|api)\(\s*["'`][A-Z]*["'`]?,?\s*["'`]/""", js)
    assert '"api/studio' in js and "`api/studio" in js
    assert "frame-ancestors 'self'" in response.headers["Content-Security-Policy"]
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert (await s.client.get("/studio/secrets.txt")).status == 404
    assert (await s.client.get("/studio/..%2fapp.py")).status == 404


async def test_writes_need_the_session_of_the_page(studio, aiohttp_client, manager, personas_dir) -> None:
    s = await studio()
    before = snapshot(personas_dir)
    draft = (await load(s, "butler"))["persona"]
    writes = [
        ("DELETE", "/api/studio/personas/robot", None),
        ("POST", "/api/studio/personas", {"id": "x", "persona": NEW_PERSONA}),
        ("PUT", "/api/studio/personas/butler", {"persona": draft, "version": "v"}),
        ("POST", "/api/studio/preview", {"voice": {"model": "en_US-joe-medium"}}),
        ("POST", "/api/studio/chat", {"persona_id": "butler", "text": "Hi"}),
    ]
    stranger = await aiohttp_client(make_app(manager, ApiSettings(services=())))
    for method, path, body in writes:
        for headers in ({}, {HEADER: "0" * 64}):
            response = await s.client.request(method, path, json=body, headers=headers)
            assert response.status == 403, (method, path, headers)
            assert "reload the studio page" in (await response.json())["error"]
        # The token of one page's session does not work without that page's cookie.
        response = await stranger.request(method, path, json=body, headers=s.session)
        assert response.status == 403
    assert snapshot(personas_dir) == before
    assert (await s.call("DELETE", "/api/studio/personas/robot")).status == 200
    assert not (personas_dir / "robot.yaml").exists()


async def test_a_rebound_host_name_gets_nothing(studio) -> None:
    s = await studio()
    evil = {"Host": "studio.attacker.example:10580"}
    assert (await s.client.get("/", headers=evil)).status == 403
    assert (await s.client.get("/api/studio", headers=evil)).status == 403
    assert (await s.call("DELETE", "/api/studio/personas/robot", headers=evil)).status == 403
    assert (await s.client.get("/", headers={"Host": "localhost:10580"})).status == 200


async def test_with_a_token_the_page_loads_and_the_token_is_the_session(aiohttp_client, manager) -> None:
    client = await aiohttp_client(make_app(manager, ApiSettings(token=TOKEN, services=())))
    page = await client.get("/")
    assert page.status == 200 and 'content="token"' in await page.text()
    assert page_token(await page.text()) == ""
    assert COOKIE not in page.cookies
    assert (await client.get("/api/studio")).status == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.get("/api/studio", headers=auth)).status == 200
    assert (await client.delete("/api/studio/personas/robot", headers=auth)).status == 200


@web.middleware
async def _from_peer(request: web.Request, handler):
    """Present the request as coming from the peer in X-Test-Peer (no traffic leaves loopback)."""
    return await handler(request.clone(remote=request.headers.get("X-Test-Peer", "172.30.32.2")))


@pytest.mark.parametrize("token", [None, TOKEN])
async def test_ingress_answers_only_the_supervisor_and_still_needs_the_page(
    aiohttp_client, manager, token
) -> None:
    app = make_app(manager, ApiSettings(token=token, services=()), ingress=True)
    app.middlewares.insert(0, _from_peer)
    client = await aiohttp_client(app)
    page = await client.get("/")
    text = await page.text()
    assert page.status == 200 and 'content="ingress"' in text and COOKIE not in page.cookies
    session = {HEADER: page_token(text)}
    assert (await client.get("/api/studio")).status == 200  # HA signed the user in; no bearer token
    assert (await client.delete("/api/studio/personas/robot")).status == 403  # but a write needs the page
    other_addon = {"X-Test-Peer": "172.30.32.5", **session}
    refused = await client.get("/api/studio", headers=other_addon)
    assert refused.status == 403 and "172.30.32.2" in (await refused.json())["error"]
    assert (await client.delete("/api/studio/personas/robot", headers=other_addon)).status == 403
    assert (await client.delete("/api/studio/personas/robot", headers=session)).status == 200


# -- editing ------------------------------------------------------------------------------------
async def test_a_save_writes_only_what_changed_and_the_services_see_it(studio, manager, personas_dir) -> None:
    s = await studio()
    path = personas_dir / "butler.yaml"
    original = path.read_text()
    body = await load(s, "butler")
    draft = body["persona"]
    draft["voice"]["speed"] = 1.2
    draft["prompt"]["style"].append("You never hurry.")
    draft["greeting"] = None
    response = await s.call(
        "PUT", "/api/studio/personas/butler", json={"persona": draft, "version": body["version"]}
    )
    saved = await response.json()
    assert response.status == 200, saved
    assert saved["changed"] and saved["comments_kept"] and saved["folder_errors"] == []
    changed = [
        line
        for line in difflib.unified_diff(
            original.splitlines(), path.read_text().splitlines(), lineterm="", n=0
        )
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert changed == [
        "-greeting: Good evening. Jeeves, at your service.",
        "+    - You never hurry.",
        "-  speed: 0.85",
        "+  speed: 1.2",
    ]
    assert "# Real earlier turns" in path.read_text() and "# How Jeeves confirms" in path.read_text()
    assert manager.personas["butler"].voice.speed == 1.2  # reloaded at once
    # The version it was read at is gone: a second save from the old page is refused.
    stale = await s.call(
        "PUT", "/api/studio/personas/butler", json={"persona": draft, "version": body["version"]}
    )
    assert stale.status == 409 and "changed on disk" in (await stale.json())["error"]
    # Saving what is there changes nothing.
    again = await s.call(
        "PUT", "/api/studio/personas/butler", json={"persona": draft, "version": saved["version"]}
    )
    assert (await again.json())["changed"] is False


def add_commented_persona(folder: Path) -> None:
    """A persona whose file is nearly full of comments."""
    comments = "".join(f"# note {n:05d} " + "." * 80 + "\n" for n in range(2500))
    (folder / "commented.yaml").write_text(comments + "name: Noted\nprompt:\n  identity: You note things.\n")


async def test_bad_input_is_refused_at_its_field_and_nothing_saved_is_lost(
    studio, manager, personas_dir
) -> None:
    add_commented_persona(personas_dir)
    manager.reload()
    s = await studio()
    before = snapshot(personas_dir)
    body = await load(s, "butler")

    async def save(change) -> tuple[int, dict]:
        draft = json.loads(json.dumps(body["persona"]))
        change(draft)
        response = await s.call(
            "PUT", "/api/studio/personas/butler", json={"persona": draft, "version": body["version"]}
        )
        return response.status, await response.json()

    status, answer = await save(lambda d: d.update(name="   "))
    assert status == 422 and [(e["field"], e["message"]) for e in answer["errors"]] == [
        ("name", "must not be empty")
    ]
    status, answer = await save(lambda d: d["voice"].update(speed=3))
    assert status == 422 and answer["errors"][0]["field"] == "voice.speed"
    assert "out of range [0.5, 2.0]" in answer["errors"][0]["message"]
    status, answer = await save(lambda d: d["prompt"]["examples"].append({"user": "Hi", "assistant": ""}))
    added = len(body["persona"]["prompt"]["examples"])
    assert status == 422 and answer["errors"][0]["field"] == f"prompt.examples[{added}].assistant"

    # A request that fits, for a file that would not (its comments take room too): refused at the text.
    commented = await load(s, "commented")
    draft = {**commented["persona"], "description": "z" * 30_000}
    response = await s.call(
        "PUT", "/api/studio/personas/commented", json={"persona": draft, "version": commented["version"]}
    )
    answer = await response.json()
    assert response.status == 422 and answer["errors"][0]["field"] == "description"
    assert f"at most {MAX_FILE_BYTES:,}" in answer["errors"][0]["message"]
    # A 5 MB paste is refused before it is read.
    huge = {"persona": {**body["persona"], "description": "y" * 5_000_000}, "version": body["version"]}
    response = await s.call(
        "PUT",
        "/api/studio/personas/butler",
        data=io.BytesIO(json.dumps(huge).encode()),
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 413 and str(MAX_FILE_BYTES) in (await response.json())["error"]

    taken = await s.call("POST", "/api/studio/personas", json={"id": "butler", "persona": NEW_PERSONA})
    assert taken.status == 409 and (await taken.json())["errors"][0]["field"] == "id"
    bad_id = await s.call("POST", "/api/studio/personas", json={"id": "Bad Id", "persona": NEW_PERSONA})
    assert bad_id.status == 422 and (await bad_id.json())["errors"][0]["field"] == "id"
    broken = "name: Broken\nprompt:\n  identity: [unclosed\nvoice: {}\n"
    imported = await s.call("POST", "/api/studio/personas", json={"id": "broken", "yaml": broken})
    error = (await imported.json())["errors"][0]
    assert imported.status == 422 and error["field"] == "(yaml)" and error["line"] == 4
    assert snapshot(personas_dir) == before


async def test_new_duplicate_import_export_and_delete(studio, manager, personas_dir) -> None:
    s = await studio(services=(), pinned=(PinnedAgent("pirate", "tcp://127.0.0.1:10510"),))
    created = await s.call("POST", "/api/studio/personas", json={"id": "sunny-side", "persona": NEW_PERSONA})
    assert created.status == 201, await created.text()
    text = (personas_dir / "sunny-side.yaml").read_text()
    assert text.startswith("name: Sunny Side\ndescription: A morning person.\n")
    assert "speed: 1.2" in text and "volume" not in text and "llm" not in text  # defaults are not written
    assert load_folder(personas_dir)["sunny-side"].greeting == "Good morning, sunshine!"
    assert manager.personas["sunny-side"].spec.prompt.style == ("You are cheerful.", "You mention the sun.")

    copy = await s.call(
        "POST",
        "/api/studio/personas",
        json={"id": "jeeves-2", "copy_of": "butler", "persona": {"name": "Jeeves II"}},
    )
    assert copy.status == 201
    copied = (personas_dir / "jeeves-2.yaml").read_text()
    assert copied == (personas_dir / "butler.yaml").read_text().replace(
        "name: Jeeves\n", "name: Jeeves II\n", 1
    )

    exported = (await load(s, "pirate"))["yaml"]
    assert exported == (personas_dir / "pirate.yaml").read_text()
    imported = await s.call("POST", "/api/studio/personas", json={"id": "pirate-2", "yaml": exported})
    assert imported.status == 201 and (personas_dir / "pirate-2.yaml").read_text() == exported

    active = await s.call("DELETE", f"/api/studio/personas/{manager.active().id}")
    assert active.status == 409 and "switch to another persona first" in (await active.json())["error"]
    pinned = await s.call("DELETE", "/api/studio/personas/pirate")
    assert pinned.status == 409 and "10510" in (await pinned.json())["error"]
    assert (await s.call("DELETE", "/api/studio/personas/jeeves-2")).status == 200
    assert not (personas_dir / "jeeves-2.yaml").exists() and "jeeves-2" not in manager.personas
    assert (await s.call("DELETE", "/api/studio/personas/nobody")).status == 404


@pytest.fixture
def one_persona(tmp_path: Path) -> Path:
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "config" / "personas" / "robot.yaml", folder)
    return folder


async def test_the_last_persona_is_never_deleted(studio, one_persona: Path, tmp_path: Path) -> None:
    manager = PersonaManager(one_persona, tmp_path / "state-one", refresh_interval=0.0)
    s = await studio(app=make_app(manager, ApiSettings(services=())))
    response = await s.call("DELETE", "/api/studio/personas/robot")  # the only one is always the active one
    assert response.status == 409
    assert (one_persona / "robot.yaml").exists()


# -- hearing and trying, through real services ---------------------------------------------------
def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as wav:
        return wav.getnframes() / wav.getframerate()


async def test_preview_speaks_unsaved_settings_through_the_tts(
    studio, tmp_path, personas_dir, state_dir
) -> None:
    voices = tmp_path / "voices"
    voices.mkdir()
    tts = await start_service(personas_dir, state_dir, voices)
    tts_uri = f"tcp://127.0.0.1:{tts.port}"
    try:
        s = await studio(services=(ServiceTarget("tts", tts_uri),))
        before = snapshot(personas_dir)
        sentence = "Good morning. The kettle is on and the sun is out."
        seconds = {}
        for speed in (1.0, 1.2):
            voice = {
                "model": "en_US-joe-medium",
                "speaker": None,
                "speed": speed,
                "pitch": 0.0,
                "volume": 1.0,
            }
            response = await s.call("POST", "/api/studio/preview", json={"voice": voice, "text": sentence})
            assert response.status == 200 and response.content_type == "audio/wav"
            seconds[speed] = wav_seconds(await response.read())
        bad = await s.call(
            "POST", "/api/studio/preview", json={"voice": {"model": "en_US-joe-medium", "speed": 9}}
        )
        assert bad.status == 422 and (await bad.json())["errors"][0]["field"] == "voice.speed"
        assert snapshot(personas_dir) == before  # nothing is saved by a preview
    finally:
        await tts.server.close()
    assert seconds[1.2] < seconds[1.0] * 0.93
    down = await studio(services=(ServiceTarget("tts", tts_uri),))
    gone = await down.call("POST", "/api/studio/preview", json={"voice": {"model": "en_US-joe-medium"}})
    assert gone.status == 502 and "cannot reach the TTS service" in (await gone.json())["error"]
    none = await (await studio()).call(
        "POST", "/api/studio/preview", json={"voice": {"model": "en_US-joe-medium"}}
    )
    assert none.status == 503


async def chat_lines(s: Studio, **body) -> list[dict]:
    response = await s.call("POST", "/api/studio/chat", json=body)
    assert response.status == 200, await response.text()
    assert response.content_type == "application/x-ndjson"
    return [json.loads(line) for line in (await response.text()).splitlines() if line]


async def test_chat_streams_the_reply_as_that_persona_in_its_voice(
    studio, fake_ollama, manager, tmp_path, personas_dir, state_dir
) -> None:
    manager.set_active("pirate")
    backend = OllamaChatBackend(OllamaSettings(host=fake_ollama.url))
    voices = tmp_path / "voices"
    voices.mkdir()
    tts = await start_service(personas_dir, state_dir, voices)
    try:
        async with persona_server(manager, backend) as (server, _):
            services = (
                ServiceTarget("persona", f"tcp://127.0.0.1:{server.port}"),
                ServiceTarget("tts", f"tcp://127.0.0.1:{tts.port}"),
            )
            s = await studio(services=services)
            first = await chat_lines(s, persona_id="coach", text="My name is Ada.")
            done = first[-1]
            second = await chat_lines(
                s, persona_id="coach", text="What is my name?", conversation_id=done["conversation_id"]
            )
            refused = await chat_lines(s, persona_id="coach", text="Switch to the butler.")
    finally:
        await tts.server.close()
        await backend.close()
    kinds = [line["type"] for line in first]
    assert kinds[0] == "text" and kinds[-1] == "done" and kinds.count("audio") == 1
    assert "".join(line["text"] for line in first if line["type"] == "text") == done["text"]
    assert done["text"] == "Ahoy matey! The sea is calm today." and done["persona_id"] == "coach"
    assert 0 < done["first_text_ms"] <= done["first_audio_ms"] <= done["total_ms"]
    assert done["audio"].startswith("data:audio/wav;base64,")
    assert wav_seconds(base64.b64decode(done["audio"].split(",", 1)[1])) > 1.0
    assert "Coach Sunny" in fake_ollama.requests[0]["messages"][0]["content"]
    users = [m["content"] for m in fake_ollama.requests[1]["messages"] if m["role"] == "user"]
    assert users[-2:] == ["My name is Ada.", "What is my name?"]  # its own history
    assert second[-1]["conversation_id"] == done["conversation_id"]
    assert refused[-1]["text"] == "This agent always answers as Coach Sunny."
    assert manager.active().id == "pirate"  # the studio never switches


async def test_chat_refuses_bad_input_and_reports_a_service_that_is_down(studio) -> None:
    s = await studio(services=(ServiceTarget("persona", "tcp://127.0.0.1:9"),))
    unknown = await s.call("POST", "/api/studio/chat", json={"persona_id": "nobody", "text": "Hi"})
    assert unknown.status == 404
    empty = await s.call("POST", "/api/studio/chat", json={"persona_id": "butler", "text": "  "})
    assert empty.status == 422 and (await empty.json())["errors"][0]["field"] == "message"
    lines = await chat_lines(s, persona_id="butler", text="Hi")
    assert lines[-1]["type"] == "error" and "cannot reach the persona service" in lines[-1]["message"]
