"""Overlays people can read: glyphs for non-Latin class names, a legend, a note when nothing was found."""
from __future__ import annotations

import os

import numpy as np
import pytest

from vocabseg import fonts
from vocabseg.fonts import font_name, label_font
from vocabseg.outputs import _interior_point, class_color, overlay
from vocabseg.predictor import Prediction
from vocabseg.segments import Segment
from vocabseg.text.vocabulary import VocabClass, Vocabulary

MISSING = "\U0010ffff"  # a noncharacter: every font draws its missing-glyph box (.notdef) for it


def _vocab(*names: str) -> Vocabulary:
    return Vocabulary("test", tuple(VocabClass((n,)) for n in names))


def _glyph(char: str) -> np.ndarray:
    mask = label_font(32).getmask(char)
    return np.asarray(mask).reshape(mask.size[1], mask.size[0])


@pytest.mark.parametrize("text", ["café", "собака", "αλεπού", "猫"])
def test_class_names_get_real_glyphs(text):
    if text == "猫" and fonts.font_path() == str(fonts.BUNDLED):
        pytest.skip(f"no CJK font on this machine (apt-get install fonts-noto-cjk); the label font is {font_name()}")
    box = _glyph(MISSING)
    for char in text:
        assert label_font(32).getmask(char).getbbox() is not None, char
        glyph = _glyph(char)
        assert glyph.shape != box.shape or not np.array_equal(glyph, box), f"{char!r} is drawn as the missing box"


def _panoptic(height: int, width: int, boxes: list[tuple[int, slice, slice, float]], names: list[str]) -> Prediction:
    panoptic = np.zeros((height, width), np.int32)
    segments = []
    for k, (category, rows, cols, score) in enumerate(boxes, 1):
        panoptic[rows, cols] = k
        segments.append(Segment(k, category, True, area=int((panoptic == k).sum()), score=score,
                                class_name=names[category]))
    return Prediction(height, width, names, panoptic=panoptic, segments=segments)


def test_legend_shows_every_class_found():
    names = ["café", "собака", "猫", "sky"]
    vocab = _vocab(*names)
    pred = _panoptic(240, 320, [(0, slice(0, 120), slice(0, 160), 0.9), (1, slice(120, 240), slice(0, 320), 0.8),
                                (2, slice(130, 140), slice(10, 20), 0.7)], names)
    out = overlay(np.zeros((240, 320, 3), np.uint8), pred, vocab)
    size = 13  # the minimum text height; a swatch is size x size with a 1-px outline
    for index in (0, 1, 2):  # blending with a black image never gives the exact colour: only swatches do
        assert (out == class_color(vocab, index)).all(-1).sum() >= (size - 2) ** 2, names[index]
    assert (out == class_color(vocab, 3)).all(-1).sum() == 0  # "sky" was not found


def test_region_colours_are_deterministic():
    names = ["car", "road"]
    pred = _panoptic(64, 64, [(0, slice(0, 32), slice(0, 64), 0.9), (1, slice(32, 64), slice(0, 64), 0.8)], names)
    image = np.full((64, 64, 3), 90, np.uint8)
    assert np.array_equal(overlay(image, pred, _vocab(*names)), overlay(image, pred, _vocab(*names)))


def test_nothing_found_draws_a_note():
    image = np.full((200, 300, 3), 128, np.uint8)
    for pred in (Prediction(200, 300, ["car"], panoptic=np.zeros((200, 300), np.int32)),
                 Prediction(200, 300, ["car"], semantic=np.full((200, 300), -1, np.int32))):
        out = overlay(image, pred, _vocab("car"))
        assert out.shape == image.shape
        changed = (out != image).any(-1)
        assert changed.sum() > 200 and changed[:40].any() and not changed[100:].any()  # a note at the top


def test_instances_are_labelled_with_their_scores():
    masks = np.zeros((2, 120, 160), bool)
    masks[0, 10:110, 10:80] = True
    masks[1, 10:110, 90:150] = True
    pred = Prediction(120, 160, ["a", "b"], instance_masks=masks, instance_scores=np.array([0.9, 0.3], np.float32),
                      instance_classes=np.array([0, 1]))
    vocab = _vocab("a", "b")
    out = overlay(np.zeros((120, 160, 3), np.uint8), pred, vocab)
    assert (out == class_color(vocab, 0)).all(-1).any()  # the legend's swatch and the border
    assert not (out[:, 90:150] != 0).any(-1)[60:110].any()  # below 0.5: not drawn


def test_labels_sit_inside_non_convex_regions():
    yy, xx = np.mgrid[0:200, 0:200]
    ring = np.abs(np.hypot(yy - 100, xx - 100) - 70) < 12  # its median pixel is the empty centre
    y, x = _interior_point(ring)
    assert ring[y, x] and np.hypot(y - 100, x - 100) == pytest.approx(70, abs=3)


@pytest.fixture()
def no_system_fonts(monkeypatch):
    """A machine with no CJK font, fontconfig or font folder (the lookups run again, then again after)."""
    monkeypatch.setattr(fonts, "_fontconfig_cjk", lambda: None)
    monkeypatch.setattr(fonts, "FONT_DIRS", ())
    for cached in (fonts.font_path, fonts.label_font):
        cached.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    for cached in (fonts.font_path, fonts.label_font):
        cached.cache_clear()


def test_without_system_fonts_the_bundled_dejavu_draws_the_labels(no_system_fonts):
    assert fonts.font_path() == str(fonts.BUNDLED) and font_name() == "DejaVu Sans"
    license_text = (fonts.BUNDLED.parent / "DejaVuSans-LICENSE.txt").read_text()
    assert "Bitstream" in license_text and "Permission is hereby granted" in license_text
    for char in "éжλ":
        assert not np.array_equal(_glyph(char), _glyph(MISSING)), char


def test_font_falls_back_to_pillow_when_even_the_bundled_font_is_missing(no_system_fonts, tmp_path):
    no_system_fonts.setattr(fonts, "BUNDLED", tmp_path / "missing.ttf")
    assert fonts.font_path() is None and font_name() != "DejaVu Sans"  # Pillow's own (Aileron with FreeType)
    assert fonts.label_font(20).getbbox("car") is not None
    assert overlay(np.zeros((64, 64, 3), np.uint8), Prediction(64, 64, ["car"]), _vocab("car")).any()


def test_the_label_font_comes_from_no_python_font_package():
    """paperang-p2-fonts-cjk (a thermal-printer library's font package) was a core dependency: a supply-chain
    risk for a font. The font is now the system's or vocabseg's own file."""
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    every = [*pyproject["project"]["dependencies"], *sum(pyproject["project"]["optional-dependencies"].values(), [])]
    assert not [d for d in every if "font" in d.lower()], every
    path = fonts.font_path()
    assert path is not None and "site-packages" not in path and "paperang" not in path, path
    assert path == str(fonts.BUNDLED) or any(path.startswith(os.path.expanduser(d)) for d in fonts.FONT_DIRS), path


@pytest.mark.parametrize(("classes", "unassigned"), [(3, 255), (300, 65535)])
def test_a_semantic_label_png_comes_with_its_class_list(tmp_path, classes, unassigned):
    import json

    from PIL import Image

    from vocabseg.outputs import write_prediction

    vocab = _vocab(*[f"class {i}" for i in range(classes)])
    semantic = np.full((20, 30), classes - 1, np.int32)
    semantic[:5] = -1  # no class
    pred = Prediction(20, 30, list(vocab.class_names), semantic=semantic)
    written = write_prediction(tmp_path, "photo", np.zeros((20, 30, 3), np.uint8), pred, vocab)
    listing = tmp_path / "semantic" / "photo.json"
    assert listing in written and not list(tmp_path.rglob("*.part"))
    described = json.loads(listing.read_text())
    labels = np.asarray(Image.open(tmp_path / "semantic" / described["file_name"]))
    names = {c["id"]: c["name"] for c in described["categories"]}
    assert described["unassigned"] == unassigned and labels[0, 0] == unassigned
    assert names[int(labels[-1, -1])] == f"class {classes - 1}" and len(names) == classes
