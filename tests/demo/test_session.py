"""The demo's logic without a browser: results, downloads, and one-line messages for mistakes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vocabseg.demo import DemoSession, ModelSource
from vocabseg.demo.examples import PHOTOS, example_photos
from vocabseg.models import FAMILIES
from vocabseg.testing import save_tiny_checkpoint, synthetic_photo

VOCAB = "red disc; blue disc; background [stuff]"


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> DemoSession:
    root = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VOCABSEG_CACHE", str(root / "text"))
        patch.setenv("VOCABSEG_HOME", str(root / "home"))  # no cached official weights
        checkpoint = save_tiny_checkpoint(root / "tiny.pth", seed=2)
        sources = [ModelSource("tiny", str(checkpoint)), ModelSource("fcclip_rn50_coco", "fcclip_rn50_coco"),
                   ModelSource("broken", str(root / "missing.pth"))]
        yield DemoSession(sources, output_root=root / "out")


def test_all_tasks_give_overlay_table_and_every_download(session):
    steps = []
    result = session.segment(synthetic_photo(), VOCAB, "tiny", "all", progress=lambda f, text: steps.append(f))
    assert result.message.startswith("**Done**"), result.message
    assert result.overlay is not None and result.overlay.shape == (96, 128, 3)
    assert result.rows and all(row[0] in {"red disc", "blue disc", "background"} for row in result.rows)
    assert sum(row[2] for row in result.rows) <= 96 * 128
    names = [Path(f).name for f in result.files]
    assert names == ["panoptic.png", "panoptic.json", "semantic_labels.png", "semantic_classes.json",
                     "instances_rle.json", "overlay.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(result.files[-1])), result.overlay)  # the page's picture
    run_folder = Path(result.files[0]).parent
    assert sorted(p.name for p in run_folder.rglob("*") if p.is_file()) == sorted(names)  # nothing else left
    panoptic = json.loads(Path(result.files[1]).read_text())
    listed = sorted((s["class_name"], s["area"]) for s in panoptic["segments_info"])
    assert listed == sorted((row[0], row[2]) for row in result.rows)  # the table is the panoptic segments
    assert steps == sorted(steps) and steps[-1] < 1


def test_semantic_rows_have_no_score_and_every_output_is_downloadable(session):
    result = session.segment(synthetic_photo(seed=1), VOCAB, "tiny", "semantic")
    assert result.rows and all(row[1] is None for row in result.rows)
    assert sum(row[2] for row in result.rows) == 96 * 128  # every pixel has a class
    assert len(result.files) == 6
    labels = np.asarray(Image.open(result.files[2]))
    assert labels.shape == (96, 128) and set(np.unique(labels)) <= {0, 1, 2}
    classes = json.loads(Path(result.files[3]).read_text())  # what each label value means
    assert [c["name"] for c in classes["categories"]] == ["red disc", "blue disc", "background"]


@pytest.mark.parametrize(("image", "vocab", "model", "expected"), [
    (None, VOCAB, "tiny", "upload a photo"),
    (np.zeros((4, 4, 3), np.uint8), VOCAB, "tiny", "at least 8x8"),
    (np.zeros((32, 32, 3), np.float32), VOCAB, "tiny", "pass uint8"),  # not silently cast
    (np.zeros((32, 32, 2), np.uint8), VOCAB, "tiny", "expected HxWx3"),
    ("photo", "   ", "tiny", "type the classes"),
    ("photo", "ade20k", "tiny", "did you mean"),
    ("photo", VOCAB, "fcclip_rn50_coco", "vocabseg demo --model fcclip_rn50_coco --weights PATH"),
    ("photo", VOCAB, "broken", "broken: "),
])
def test_mistakes_are_one_line_messages(session, image, vocab, model, expected):
    image = synthetic_photo() if isinstance(image, str) else image
    result = session.segment(image, vocab, model, "panoptic")
    assert result.message.startswith("**Error**") and expected in result.message, result.message
    assert "\n" not in result.message and "Traceback" not in result.message
    assert result.overlay is None and not result.files


def test_greyscale_and_rgba_photos_are_accepted(session):
    grey = synthetic_photo()[..., 0]
    rgba = np.dstack([synthetic_photo(), np.full((96, 128), 255, np.uint8)])
    for image in (grey, rgba):
        assert session.segment(image, VOCAB, "tiny", "semantic").message.startswith("**Done**")


def test_example_photos_are_real_photos(tmp_path):
    pytest.importorskip("skimage")
    paths = example_photos(tmp_path)
    assert [p.stem for p in paths] == list(PHOTOS)
    sizes = [Image.open(p).size for p in paths]
    assert all(min(size) >= 300 for size in sizes)


def test_demo_command_offers_checkpoints_and_zoo_models():
    from vocabseg.cli import build_parser
    from vocabseg.cli.demo import model_sources
    from vocabseg.errors import ConfigError
    from vocabseg.zoo import list_models

    parse = build_parser().parse_args
    sources = model_sources(parse(["demo", "--checkpoint", "runs/a/model.pth", "--checkpoint", "hf-hub:me/x"]))
    assert [(s.label, s.name_or_path) for s in sources] == [("model.pth", "runs/a/model.pth"),
                                                            ("hf-hub:me/x", "hf-hub:me/x")]
    offline = model_sources(parse(["demo", "--model", "fcclip_rn50_coco", "--weights", "fcclip_rn50.pth"]))
    assert offline[0].weights == "fcclip_rn50.pth"
    assert [s.name_or_path for s in model_sources(parse(["demo"]))] == list_models()
    with pytest.raises(ConfigError, match="exactly one --model"):
        model_sources(parse(["demo", "--weights", "w.pth"]))
    for bad in (["--min-size", "0"], ["--max-size", "-5"], ["--port", "0"]):
        with pytest.raises(SystemExit):  # argparse's one-line error, before any model loads
            parse(["demo", *bad])


def test_fast_and_exact_mode_set_the_precision(session):
    fast = session.segment(synthetic_photo(), VOCAB, "tiny", "semantic", mode="fast")
    assert fast.message.startswith("**Done**") and session.predictor("tiny").inference.precision == "fast"
    session.segment(synthetic_photo(), VOCAB, "tiny", "semantic", mode="exact")
    assert session.predictor("tiny").inference.precision == "fp32"
    assert "pick one of: exact, fast" in session.segment(synthetic_photo(), VOCAB, "tiny", "semantic", "turbo").message


@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"fcclip"}))  # FC-CLIP: the tests above
def test_every_family_runs_its_own_task(family, tmp_path, monkeypatch):
    monkeypatch.setenv("VOCABSEG_CACHE", str(tmp_path / "text"))
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pth", family=family)
    session = DemoSession([ModelSource(family, str(checkpoint))], output_root=tmp_path / "out")
    task = session.predictor(family).family.tasks[0]
    assert session.choose(family).task == task
    result = session.segment(synthetic_photo(), VOCAB, family, task)
    assert result.message.startswith("**Done**") and result.overlay is not None, result.message
    other = next((t for t in ("panoptic", "semantic", "instance") if t not in session.predictor(family).family.tasks),
                 None)
    if other is not None:  # a task the family does not give: said in the page
        assert "pick one of those tasks" in session.segment(synthetic_photo(), VOCAB, family, other).message


@pytest.fixture()
def two_families(tmp_path, monkeypatch) -> DemoSession:
    """The page of `vocabseg demo` with every zoo model (no weights here) and two checkpoints of two families,
    a Cascade-CLIP one first (it gives semantic output only)."""
    monkeypatch.setenv("VOCABSEG_CACHE", str(tmp_path / "text"))
    monkeypatch.setenv("VOCABSEG_HOME", str(tmp_path / "home"))  # no cached official weights
    cascade = save_tiny_checkpoint(tmp_path / "cascade.pth", family="cascade_clip")
    fcclip = save_tiny_checkpoint(tmp_path / "fcclip.pth", seed=2)
    sources = [ModelSource("cascade_clip_vitb16_voc20_inductive", "cascade_clip_vitb16_voc20_inductive"),
               ModelSource("cascade.pth", str(cascade)), ModelSource("fcclip.pth", str(fcclip)),
               ModelSource("fcclip_rn50_coco", "fcclip_rn50_coco")]
    return DemoSession(sources, output_root=tmp_path / "out")


def test_the_page_opens_on_a_model_that_loads_with_a_task_it_gives(two_families):
    label, choice = two_families.opening()
    assert label == "cascade.pth"  # the first whose weights are here, not the zoo model listed before it
    assert choice.loaded and choice.tasks == ("semantic",) and choice.task == "semantic"
    assert choice.message.startswith("**Ready**") and "Cascade-CLIP" in choice.message
    first_click = two_families.segment(synthetic_photo(), VOCAB, label, choice.task)
    assert first_click.message.startswith("**Done**") and first_click.overlay is not None, first_click.message


def test_picking_a_model_resets_the_task_to_one_it_gives(two_families):
    fcclip = two_families.choose("fcclip.pth")
    assert fcclip.loaded and fcclip.tasks == ("panoptic", "semantic", "instance") and fcclip.task == "panoptic"
    cascade = two_families.choose("cascade.pth")
    assert cascade.tasks == ("semantic",) and cascade.task == "semantic"
    missing = two_families.choose("fcclip_rn50_coco")  # known from the zoo without its weights
    assert not missing.loaded and missing.task == "panoptic" and missing.message.startswith("**Error**")


def test_missing_weights_name_commands_that_work_for_the_family(two_families):
    from vocabseg.zoo import get_variant

    cascade = two_families.choose("cascade_clip_vitb16_voc20_inductive").message
    assert "vocabseg download" not in cascade  # Baidu Netdisk only: no program can fetch it
    assert get_variant("cascade_clip_vitb16_voc20_inductive").weights.url in cascade
    assert "--weights PATH" in cascade and "\n" not in cascade
    fcclip = two_families.choose("fcclip_rn50_coco").message
    assert "`vocabseg download fcclip_rn50_coco`" in fcclip and "--weights PATH" in fcclip
