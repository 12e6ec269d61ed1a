"""`vocabseg predict` on the example street scene writes the same files as before the family redesign.

The pinned files in ``goldens/predict_tiny_street`` were written by the FC-CLIP-only code
(before the model-family seam) with a seeded tiny random-weight model. PNGs must be
byte-identical; JSON files equal, with instance scores to 1e-5 (their last float32 digits
depend on the CPU's vector kernels). The overlay's labels are drawn with vocabseg's own DejaVu
Sans here whatever fonts the machine has (re-pinned when that font replaced a font package;
the label PNGs and JSON files are as first pinned).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vocabseg import fonts
from vocabseg.cli import main
from vocabseg.runs import RUN_FILES
from vocabseg.testing import save_tiny_checkpoint

PINNED = Path(__file__).parent / "goldens" / "predict_tiny_street"
EXAMPLE = Path(__file__).parents[1] / "examples" / "street.png"
VOCAB = "car; person; traffic cone; road [stuff]; sky [stuff]"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pinned")
    save_tiny_checkpoint(root / "tiny.pth", seed=0, min_size=64, max_size=128)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VOCABSEG_CACHE", str(root / "text"))
        patch.setattr(fonts, "font_path", lambda: str(fonts.BUNDLED))  # not a CJK font the machine may have
        fonts.label_font.cache_clear()
        assert main(["predict", str(EXAMPLE), "--model", str(root / "tiny.pth"), "--vocab", VOCAB,
                     "--task", "all", "--output", str(root / "out")]) == 0
    fonts.label_font.cache_clear()
    return root / "out"


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name not in RUN_FILES)


def test_same_files_are_written(outputs):
    assert _files(outputs) == _files(PINNED)


@pytest.mark.parametrize("name", ["panoptic/street.png", "semantic/street.png", "street_overlay.png"])
def test_images_are_byte_identical(outputs, name):
    assert (outputs / name).read_bytes() == (PINNED / name).read_bytes()


@pytest.mark.parametrize("name", ["panoptic/street.json", "semantic/street.json"])  # the latter: the label
def test_json_is_identical(outputs, name):  # PNG's class list, pinned when it was added (issue 19)
    assert json.loads((outputs / name).read_text()) == json.loads((PINNED / name).read_text())


def test_instances_match(outputs):
    ours = json.loads((outputs / "instance/street.json").read_text())
    pinned = json.loads((PINNED / "instance/street.json").read_text())
    assert len(ours) == len(pinned) == 30
    for a, b in zip(ours, pinned):
        assert a["score"] == pytest.approx(b["score"], rel=1e-5)
        assert {k: v for k, v in a.items() if k != "score"} == {k: v for k, v in b.items() if k != "score"}
