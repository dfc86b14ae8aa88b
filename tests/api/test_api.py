"""The control API on a real aiohttp server (pytest-aiohttp), against a real personas folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wyoming_persona.api import ApiSettings, ServiceTarget, make_app
from wyoming_persona.api.settings import SettingsError
from wyoming_persona.personas import PersonaManager

from .conftest import free_port

TOKEN = "s3cret-token"

BAD_PERSONA = """\
name: Broken
prompt:
  identity: I am broken.
voice:
  speed: 9
  colour: blue
"""

GOOD_PERSONA = """\
name: Captain Test
description: A test pirate.
prompt:
  identity: You are Captain Test.
  style:
    - Talk like a pirate.
voice:
  model: en_US-joe-medium
  pitch: -2
"""


@pytest.fixture
def settings() -> ApiSettings:
    return ApiSettings(services=())


@pytest.fixture
async def client(aiohttp_client, manager: PersonaManager, settings: ApiSettings):
    return await aiohttp_client(make_app(manager, settings))


def _snapshot_files(*folders: Path) -> dict[Path, bytes]:
    return {
        p: p.read_bytes()
        for folder in folders
        if folder.exists()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


async def test_list_personas(client) -> None:
    response = await client.get("/api/personas")
    assert response.status == 200
    body = await response.json()
    ids = [p["id"] for p in body["personas"]]
    assert ids == ["assistant", "butler", "coach", "pirate", "robot"]
    assert body["active"] == "assistant"
    assistant = body["personas"][0]
    assert assistant["active"] is True
    assert set(assistant["voice"]) == {"model", "speaker", "speed", "pitch", "volume"}


async def test_show_persona_has_prompt_and_voice(client, manager: PersonaManager) -> None:
    response = await client.get("/api/personas/pirate")
    assert response.status == 200
    body = await response.json()
    pirate = manager.get("pirate")
    assert body["name"] == pirate.name
    assert body["voice"]["model"] == pirate.voice.model
    assert body["voice"]["pitch"] == pirate.voice.pitch
    assert pirate.spec.prompt.identity in body["system_prompt"]
    assert body["file"] == "pirate.yaml"


async def test_unknown_persona_is_json_404_with_known_ids(client) -> None:
    response = await client.get("/api/personas/nobody")
    assert response.status == 404
    body = await response.json()
    assert "nobody" in body["error"]
    assert "pirate" in body["known"]


async def test_set_active_by_id_and_by_name(client, manager: PersonaManager, state_dir: Path) -> None:
    response = await client.put("/api/active", json={"id": "pirate"})
    assert response.status == 200
    assert (await response.json()) == {
        "id": "pirate",
        "name": manager.get("pirate").name,
        "previous": "assistant",
    }
    assert manager.active().id == "pirate"
    assert json.loads((state_dir / "active_persona.json").read_text())["active"] == "pirate"

    butler_name = manager.get("butler").name
    response = await client.put("/api/active", json={"id": butler_name.upper()})
    assert response.status == 200
    assert (await client.get("/api/active")).status == 200
    assert (await (await client.get("/api/active")).json())["id"] == "butler"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b"{}", 422, '{"id"'),
        (b'{"id": 7}', 422, '{"id"'),
        (b'{"id": "ghost"}', 404, "unknown persona"),
    ],
)
async def test_set_active_bad_bodies(client, manager: PersonaManager, body, status, fragment) -> None:
    response = await client.put("/api/active", data=body, headers={"Content-Type": "application/json"})
    assert response.status == status
    assert response.content_type == "application/json"
    assert fragment in (await response.json())["error"]
    assert manager.active().id == "assistant"


async def test_reload_with_errors_keeps_old_snapshot(client, personas_dir: Path) -> None:
    (personas_dir / "broken.yaml").write_text(BAD_PERSONA)
    response = await client.post("/api/reload")
    assert response.status == 422
    body = await response.json()
    texts = [e["text"] for e in body["errors"]]
    assert "broken.yaml:5:10: voice.speed: 9.0 is out of range [0.5, 2.0]" in texts
    assert any(t.startswith("broken.yaml:6:3: voice.colour: unknown key") for t in texts)
    assert body["personas"] == ["assistant", "butler", "coach", "pirate", "robot"]
    listed = await (await client.get("/api/personas")).json()
    assert len(listed["personas"]) == 5

    (personas_dir / "broken.yaml").write_text(GOOD_PERSONA)
    response = await client.post("/api/reload")
    assert response.status == 200
    body = await response.json()
    assert body["ok"] is True and "broken" in body["personas"]


async def test_validate_never_writes(client, personas_dir: Path, state_dir: Path) -> None:
    before = _snapshot_files(personas_dir, state_dir)
    response = await client.post("/api/validate?id=captain", data=GOOD_PERSONA)
    assert response.status == 200
    body = await response.json()
    assert body["ok"] is True and body["name"] == "Captain Test"
    assert "You are Captain Test." in body["system_prompt"]
    assert body["voice"]["pitch"] == -2.0

    response = await client.post("/api/validate?id=broken", data=BAD_PERSONA)
    assert response.status == 422
    errors = (await response.json())["errors"]
    assert {(e["line"], e["column"], e["field"]) for e in errors} == {
        (5, 10, "voice.speed"),
        (6, 3, "voice.colour"),
    }
    assert errors[0]["file"] == "broken.yaml"
    assert _snapshot_files(personas_dir, state_dir) == before


@pytest.mark.parametrize(
    ("query", "body", "status", "fragment"),
    [
        ("", b"", 400, "empty body"),
        ("", b"\xff\xfe", 400, "UTF-8"),
        ("?id=../etc", b"name: x", 422, "lowercase"),
        ("", b"name: [unclosed", 422, "error"),
        ("", b"- just\n- a list\n", 422, "error"),
    ],
)
async def test_validate_bad_bodies(client, query, body, status, fragment) -> None:
    response = await client.post(f"/api/validate{query}", data=body)
    assert response.status == status
    assert fragment in (await response.json())["error"]


async def test_validate_yaml_syntax_error_has_line(client) -> None:
    response = await client.post("/api/validate", data=b"name: ok\nprompt: [unclosed\n")
    errors = (await response.json())["errors"]
    assert errors[0]["field"] == "(yaml)" and errors[0]["line"] >= 2


async def test_unknown_route_and_method_are_json(client) -> None:
    response = await client.get("/api/nope")
    assert response.status == 404
    assert "no endpoint /api/nope" in (await response.json())["error"]
    response = await client.delete("/api/active")
    assert response.status == 405
    assert "DELETE" in (await response.json())["error"]


async def test_body_too_large(client) -> None:
    response = await client.post("/api/validate", data=b"a" * (300 * 1024))
    assert response.status == 413
    assert "larger than" in (await response.json())["error"]


# -- auth ---------------------------------------------------------------------------------------
async def test_token_required_on_every_endpoint(aiohttp_client, manager: PersonaManager) -> None:
    client = await aiohttp_client(make_app(manager, ApiSettings(token=TOKEN, services=())))
    for method, path in [
        ("GET", "/api/personas"),
        ("PUT", "/api/active"),
        ("GET", "/metrics"),
        ("POST", "/api/validate"),
        ("GET", "/api/health"),
    ]:
        response = await client.request(method, path)
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = await client.get("/api/personas", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    ok = await client.get("/api/personas", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status == 200
    switched = await client.put(
        "/api/active", json={"id": "robot"}, headers={"Authorization": f"bearer {TOKEN}"}
    )
    assert switched.status == 200
    assert manager.active().id == "robot"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "homeassistant.local"])
def test_non_loopback_needs_token(host: str) -> None:
    with pytest.raises(SettingsError, match="--token"):
        ApiSettings(host=host).check()
    ApiSettings(host=host, token=TOKEN).check()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_without_token_is_fine(host: str) -> None:
    ApiSettings(host=host).check()


# -- health and metrics -------------------------------------------------------------------------
async def test_health_all_ok(aiohttp_client, manager: PersonaManager, wyoming_service: str) -> None:
    settings = ApiSettings(services=(ServiceTarget("asr", wyoming_service),))
    client = await aiohttp_client(make_app(manager, settings))
    response = await client.get("/api/health")
    assert response.status == 200
    body = await response.json()
    assert body["ok"] is True
    (service,) = body["services"]
    assert service["ok"] is True and service["programs"] == ["asr:fake-asr"]
    assert service["latency_ms"] >= 0 and service["error"] is None


async def test_health_reports_each_failure(
    aiohttp_client, manager: PersonaManager, wyoming_service: str, silent_service: str
) -> None:
    settings = ApiSettings(
        services=(
            ServiceTarget("asr", wyoming_service),
            ServiceTarget("silent", silent_service),
            ServiceTarget("down", f"tcp://127.0.0.1:{free_port()}"),
        ),
        health_timeout=0.5,
    )
    client = await aiohttp_client(make_app(manager, settings))
    response = await client.get("/api/health")
    assert response.status == 503
    services = {s["name"]: s for s in (await response.json())["services"]}
    assert services["asr"]["ok"] is True
    assert services["silent"]["ok"] is False and "no info within 0.5 s" in services["silent"]["error"]
    assert services["down"]["ok"] is False and services["down"]["error"]

    metrics = await (await client.get("/metrics")).text()
    assert 'wyoming_persona_service_up{service="asr"} 1' in metrics
    assert 'wyoming_persona_service_up{service="silent"} 0' in metrics
    assert 'wyoming_persona_service_probe_failures_total{service="down"} 2' in metrics
    assert 'wyoming_persona_service_probe_duration_seconds_count{service="asr"} 2' in metrics


async def test_metrics_counts_requests_and_errors(client) -> None:
    await client.get("/api/personas")
    await client.get("/api/personas")
    await client.get("/api/personas/ghost")
    await client.put("/api/active", json={"id": "coach"})
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.text()
    assert 'wyoming_persona_api_requests_total{method="GET",route="/api/personas",status="200"} 2' in text
    assert 'wyoming_persona_api_errors_total{method="GET",route="/api/personas/{persona_id}"} 1' in text
    assert 'wyoming_persona_persona_switches_total{source="api"} 1' in text
    assert 'wyoming_persona_active_persona{persona="coach"} 1' in text
    assert "wyoming_persona_personas 5" in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2, line
