"""The demo page in a real browser: Debian's headless Chromium driven by Playwright, tiny random model.

Skipped only where /usr/bin/chromium is missing (``apt-get install -y chromium``; CI installs it).
The screenshot is kept under the test's tmp dir and copied to a stable path printed in the output.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
# Playwright's own browser download is not needed (nor reachable): the system's chromium, offline.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WORDS = ["cat", "wall", "floor"]
SCREENSHOT = Path(os.environ.get("VOCABSEG_SCREENSHOT_DIR", tempfile.gettempdir())) / "vocabseg-demo-screenshot.png"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:.*(no_silent_downcasting|copy keyword)"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (/usr/bin/chromium): "
                                                     "apt-get install -y chromium"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    from vocabseg.demo import DemoSession, ModelSource, launch
    from vocabseg.testing import save_tiny_checkpoint

    monkeypatch.setenv("VOCABSEG_CACHE", str(tmp_path / "text"))
    monkeypatch.setenv("VOCABSEG_HOME", str(tmp_path / "home"))  # no cached official weights
    # A seed whose random weights give a few panoptic segments on the photo (most give none or one).
    fcclip = save_tiny_checkpoint(tmp_path / "tiny.pth", kind="resnet", seed=2, min_size=128, max_size=256)
    cascade = save_tiny_checkpoint(tmp_path / "cascade.pth", family="cascade_clip")
    # As `vocabseg demo` with zoo models and checkpoints: a zoo model without weights first, then a
    # Cascade-CLIP checkpoint (semantic output only), then FC-CLIP.
    sources = [ModelSource("cascade_clip_vitb16_voc20_inductive", "cascade_clip_vitb16_voc20_inductive"),
               ModelSource("tiny random Cascade-CLIP", str(cascade)), ModelSource("tiny random FC-CLIP", str(fcclip))]
    session = DemoSession(sources, output_root=tmp_path / "out")
    port = _free_port()
    demo = launch(session, port=port, block=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_upload_type_segment_in_chromium(served, tmp_path, capsys):
    sync_api = pytest.importorskip("playwright.sync_api")
    skimage_data = pytest.importorskip("skimage.data")
    photo = tmp_path / "chelsea.png"
    Image.fromarray(skimage_data.chelsea()).save(photo)
    started = time.perf_counter()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(served, wait_until="domcontentloaded")
            sync_api.expect(page).to_have_title("vocabseg demo")
            sync_api.expect(page.locator("#model input")).to_have_value("tiny random Cascade-CLIP")  # weights here
            sync_api.expect(page.locator("#status")).to_contain_text("Ready")
            assert _task_options(page) == ["semantic"] and _checked_task(page) == "semantic"
            page.locator("#photo input[type=file]").set_input_files(str(photo))
            page.locator("#builtin input").click()  # the picker writes a built-in name into the text box
            page.get_by_role("option", name="pascal_voc_20", exact=True).click()
            sync_api.expect(page.locator("#vocabulary textarea")).to_have_value("pascal_voc_20")
            page.locator("#vocabulary textarea").fill("; ".join(WORDS[:1] + [f"{w} [stuff]" for w in WORDS[1:]]))
            page.locator("#run").click()  # the first click, on what the page opened with
            sync_api.expect(page.locator("#status")).to_contain_text("segment(s) of 3 class(es)", timeout=30_000)
            for name in ("semantic_labels.png", "semantic_classes.json"):
                stem, suffix = name.split(".")
                sync_api.expect(page.locator("#downloads")).to_contain_text(re.compile(rf"{stem}\s*\.{suffix}"))
            page.screenshot(path=str(tmp_path / "first_click.png"), full_page=True)

            page.locator("#model input").click()  # another family: the task follows the model
            page.get_by_role("option", name="tiny random FC-CLIP", exact=True).click()
            sync_api.expect(page.locator("#task")).to_contain_text("panoptic")
            sync_api.expect(page.locator("#status")).to_contain_text("FC-CLIP")
            assert _task_options(page) == ["panoptic", "semantic", "instance", "all"]
            assert _checked_task(page) == "panoptic"
            page.locator("#run").click()
            sync_api.expect(page.locator("#status")).to_contain_text("segment(s) of 3 class(es)", timeout=30_000)
            sync_api.expect(page.locator("#result img")).to_be_visible()
            rows = [row.split("\n")[0] for row in page.locator("#segments [role=row]").all_inner_texts()[1:]]
            assert rows and set(rows) <= set(WORDS), rows  # segments of typed classes only (header skipped)
            downloads = page.locator("#downloads")
            for name in ("panoptic.png", "panoptic.json", "semantic_labels.png", "semantic_classes.json",
                         "instances_rle.json"):
                stem, suffix = name.split(".")
                sync_api.expect(downloads).to_contain_text(re.compile(rf"{stem}\s*\.{suffix}"))  # spans split it
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
        finally:
            browser.close()
    seconds = time.perf_counter() - started
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "demo.png", SCREENSHOT)
    first = SCREENSHOT.with_name("vocabseg-demo-first-click.png")
    shutil.copy(tmp_path / "first_click.png", first)
    with capsys.disabled():
        print(f"\ndemo screenshots: {first} (first click), {SCREENSHOT} (page driven in {seconds:.1f} s)")
    assert Image.open(SCREENSHOT).size[0] == 1400


def _task_options(page) -> list[str]:
    return [label.strip() for label in page.locator("#task label").all_inner_texts()]


def _checked_task(page) -> str:
    return page.locator("#task input:checked").get_attribute("value") or ""
