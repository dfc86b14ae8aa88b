"""The persona studio in a real browser (Playwright driving Debian's Chromium, headless) against real
services: `persona` (SmolLM2), `tts`, `asr` and `api`, started like `make run` starts them.

One flow, as a user would go through it: make a persona, hear its voice before saving, trip over bad
input, save, switch to it, talk to it, export it, and delete it. What is asserted is what the page shows
and what the files and the services did, not markup details.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

from wyoming_persona.personas.loader import load_folder
from wyoming_persona.suite import free_ports, running_suite

pytestmark = pytest.mark.model

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
WAIT_MS = 120_000
"""The longest any one step may take (a reply of the real model on two busy cores included)."""
DOCS = Path(__file__).resolve().parents[2] / "docs"
SCREENSHOTS_ENV = "WYOMING_PERSONA_SCREENSHOTS"
"""Set it to copy the screenshots into docs/ (for the README)."""
PASTE_5_MB = """input => {
    input.value = "x".repeat(5 * 1024 * 1024);
    input.dispatchEvent(new Event("input", {bubbles: true}));
}"""
SAMPLE = "Good morning! The kettle is on and the sun is coming up over the hills."


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: run scripts/ensure-test-services.sh (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture
async def services(
    chromium: Path, personas_dir: Path, state_dir: Path, tmp_path: Path
) -> AsyncIterator[dict[str, str]]:
    ports = free_ports(("vad", "asr", "persona", "tts", "api", "pinned"))
    pinned = ("--pinned-persona", f"butler={ports.pop('pinned')}")
    logs = tmp_path / "logs"
    logs.mkdir()
    extra = {"persona": ("--model", "smollm2", "--seed", "1", *pinned), "api": pinned}
    async with asyncio.timeout(300):
        async with running_suite(
            personas_dir, state_dir, logs, ports, ("asr", "persona", "tts", "api"), extra
        ) as running:
            yield {name: service.address for name, service in running.services.items()} | {"logs": str(logs)}


@pytest.fixture
async def page(chromium: Path, services: dict[str, str]) -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                viewport={"width": 1280, "height": 900}, accept_downloads=True
            )
            page = await context.new_page()
            page.set_default_timeout(WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page
            assert errors == [], errors  # no script error on the page, ever
        finally:
            await browser.close()


def field(page: Page, path: str):
    """The input of a form field by the persona path it edits (as the loader names fields)."""
    return page.locator(f'#persona-form [data-field="{path}"]')


def error_at(page: Page, path: str, root: str = "#persona-form"):
    return (
        page.locator(f'{root} [data-field="{path}"]')
        .locator("xpath=ancestor::label[1]")
        .locator(".field-error")
    )


async def hear(page: Page, speed: str) -> float:
    """Press "Hear it"; the seconds of speech the page got from the TTS for the unsaved voice settings."""
    async with page.expect_response(lambda r: r.url.endswith("api/studio/preview")) as answer:
        await page.get_by_role("button", name="Hear it").click()
    response = await answer.value
    assert response.status == 200 and response.headers["content-type"] == "audio/wav"
    audio = page.locator("#preview-audio")
    await expect(audio).to_have_attribute("data-speed", speed)
    await expect(page.locator("#status")).to_contain_text(f"at speed {speed}")
    return float(await audio.get_attribute("data-seconds"))


def read_text(path: str | Path) -> str:
    return Path(path).read_text()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def active_on_disk(state_dir: Path) -> str:
    return json.loads((state_dir / "active_persona.json").read_text())["active"]


def personas_check(folder: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "wyoming_persona", "personas", "check", str(folder)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def talk(services: dict[str, str], personas_dir: Path, state_dir: Path, text: str) -> dict:
    command = [
        sys.executable, "-m", "wyoming_persona", "talk", "--json", "--no-realtime", "--text", text,
        "--asr", services["asr"], "--persona-uri", services["persona"], "--tts", services["tts"],
        "--personas-dir", str(personas_dir), "--state-dir", str(state_dir),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def screenshot(page: Page, tmp_path: Path, name: str, full_page: bool = False) -> None:
    path = tmp_path / name
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 10_000  # a real picture of the page, not an empty one
    if os.environ.get(SCREENSHOTS_ENV):
        DOCS.mkdir(exist_ok=True)
        shutil.copy(path, DOCS / name)


async def test_make_hear_save_switch_try_export_and_delete_a_persona(
    page: Page, services: dict[str, str], personas_dir: Path, state_dir: Path, tmp_path: Path
) -> None:
    await page.goto(services["api"] + "/")
    personas = page.locator("#persona-list > li")
    await expect(personas).to_have_count(5)
    await expect(page.locator("#active-chip")).to_have_text("Active: House Assistant")
    # The pinned agent says which persona it is, and which voice its pipeline wants.
    await expect(page.locator('#agent-list li[data-agent="butler"]')).to_contain_text("always Jeeves")
    await expect(page.locator('#agent-list li[data-agent="butler"]')).to_contain_text('TTS voice "butler"')

    # -- make a persona, only through the page ------------------------------------------------------
    await page.get_by_role("button", name="New", exact=True).click()
    await field(page, "name").fill("Sunny Side")
    await expect(field(page, "id")).to_have_value("sunny-side")
    await field(page, "prompt.identity").fill(
        "You are Sunny Side, a cheerful morning person who loves sunrises."
    )
    for line in ("You are cheerful and warm.", "You mention the sunshine."):
        await page.get_by_role("button", name="Add a style line").click()
        await page.locator('#persona-form [data-list="prompt.style"] input').last.fill(line)
    await field(page, "greeting").fill("Good morning, sunshine!")

    # -- hear it before saving: the preview speaks the speed on the slider --------------------------
    await page.locator("#preview-text").fill(SAMPLE)
    await field(page, "voice.speed").fill("0.6")
    slow = await hear(page, "0.6")
    await field(page, "voice.speed").fill("1.2")
    await expect(page.locator('output[data-output="voice.speed"]')).to_have_text("1.2")
    at_speed_1_2 = await hear(page, "1.2")
    assert at_speed_1_2 < slow * 0.75  # twice as fast (the TTS's own noise moves each a little)
    assert not (personas_dir / "sunny-side.yaml").exists()  # hearing it saved nothing

    # -- bad input: a clear message at the field, and nothing already saved is lost -------------------
    before = snapshot(personas_dir)
    await field(page, "name").fill("")
    await page.get_by_role("button", name="Create").click()
    await expect(error_at(page, "name")).to_have_text("must not be empty")
    await field(page, "name").fill("Sunny Side")
    await field(page, "id").fill("butler")
    await page.get_by_role("button", name="Create").click()
    await expect(error_at(page, "id")).to_contain_text("'butler' is taken")
    await field(page, "id").fill("sunny-side")
    await field(page, "description").evaluate(PASTE_5_MB)
    await page.get_by_role("button", name="Create").click()
    await expect(error_at(page, "description")).to_contain_text(
        "This is 5.0 MB; a persona file holds at most 256 KB"
    )
    await field(page, "description").fill("Loves mornings.")
    await page.get_by_role("button", name="Import").click()
    await page.locator("#import-id").fill("broken")
    await page.locator("#import-yaml").fill("name: Broken\nprompt:\n  identity: [unclosed\nvoice: {}\n")
    await page.get_by_role("button", name="Import", exact=True).last.click()
    await expect(error_at(page, "(yaml)", "#import-form")).to_contain_text(
        "line 4, column 6: while parsing a flow sequence, expected ',' or ']'"
    )
    await page.locator("#import-cancel").click()
    assert snapshot(personas_dir) == before

    # -- save ---------------------------------------------------------------------------------------
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator("#status")).to_have_text("Saved sunny-side.yaml")
    await expect(personas).to_have_count(6)
    saved = (personas_dir / "sunny-side.yaml").read_text()
    assert "speed: 1.2" in saved and "You mention the sunshine." in saved
    check = personas_check(personas_dir)
    assert check.returncode == 0, check.stderr
    persona = load_folder(personas_dir)["sunny-side"]
    assert persona.greeting == "Good morning, sunshine!" and persona.voice.speed == 1.2
    assert persona.spec.prompt.style == ("You are cheerful and warm.", "You mention the sunshine.")

    # -- switch to it with one click ------------------------------------------------------------------
    await (
        page.locator('#persona-list li[data-persona="sunny-side"]').get_by_role("button", name="Make").click()
    )
    await expect(page.locator("#active-chip")).to_have_text("Active: Sunny Side")
    assert active_on_disk(state_dir) == "sunny-side"

    # -- try it: the reply streams in, with its first-audio time, in its own voice --------------------
    await page.locator("#chat-text").fill("Good morning! What do you love?")
    await page.get_by_role("button", name="Send").click()
    reply = page.locator("#chat-log li.reply").last
    await expect(reply).to_have_attribute("data-state", "done")
    await expect(reply).to_have_attribute("data-persona", "sunny-side")
    await expect(reply.locator(".timing").first).to_contain_text("first audio")
    assert int(await reply.get_attribute("data-chunks")) >= 1  # text arrived before the reply was done
    assert (await reply.locator(".text").text_content()).strip()
    assert float(await reply.get_attribute("data-first-audio-ms")) > 0
    duration = await reply.locator("audio").evaluate(
        "audio => new Promise(done => audio.readyState > 0 ? done(audio.duration)"
        " : audio.addEventListener('loadedmetadata', () => done(audio.duration)))"
    )
    assert duration > 0.5  # the reply, spoken
    assert active_on_disk(state_dir) == "sunny-side"
    await screenshot(page, tmp_path, "studio-desktop.png", full_page=True)

    # ... and through `talk`, the persona made in the page answers a voice turn.
    turn = talk(services, personas_dir, state_dir, "Good morning, who are you?")
    assert turn["reply"] and turn["context"]["persona_id"] == "sunny-side"

    # -- export ---------------------------------------------------------------------------------------
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Export").click()
    download = await download_info.value
    assert download.suggested_filename == "sunny-side.yaml"
    assert read_text(await download.path()) == saved

    # -- delete: not while it is the active persona ------------------------------------------------------
    await page.get_by_role("button", name="Delete").click()
    await page.locator("#confirm-ok").click()
    await expect(page.locator("#form-error")).to_contain_text("switch to another persona first")
    assert (personas_dir / "sunny-side.yaml").exists()
    await (
        page.locator('#persona-list li[data-persona="assistant"]').get_by_role("button", name="Make").click()
    )
    await expect(page.locator("#active-chip")).to_have_text("Active: House Assistant")
    await page.get_by_role("button", name="Delete").click()
    await page.locator("#confirm-ok").click()
    await expect(personas).to_have_count(5)
    assert not (personas_dir / "sunny-side.yaml").exists()
    assert active_on_disk(state_dir) == "assistant"

    # -- the phone width, in the dark look ------------------------------------------------------------
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.emulate_media(color_scheme="dark")
    await page.locator('#persona-list li[data-persona="butler"] .pick').click()
    await expect(field(page, "name")).to_have_value("Jeeves")
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(17, 17, 17)"  # Home Assistant's dark background
    await screenshot(page, tmp_path, "studio-phone.png")
