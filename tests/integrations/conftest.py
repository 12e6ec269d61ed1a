"""Shared inputs of the integration tests: a tiny checkpoint, three photos, their predictions and run folder."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from vocabseg.checkpoints import save_checkpoint
from vocabseg.cli import main
from vocabseg.models import get_family
from vocabseg.predictor import Predictor
from vocabseg.testing import synthetic_photo, tiny_config, tiny_model
from vocabseg.text import TextEmbeddingCache

VOCAB = "cat; dog; road [stuff]; sky [stuff]"
SIZES = [(60, 80), (72, 96), (50, 70)]  # (height, width) of the three photos


@pytest.fixture(scope="module")
def vocab() -> str:
    return VOCAB


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("integ")


@pytest.fixture(scope="module")
def text_cache(workdir, one_thread):
    """VOCABSEG_CACHE set for the module (the CLI and Ray actors read it), restored after."""
    mp = pytest.MonkeyPatch()
    mp.setenv("VOCABSEG_CACHE", str(workdir / "text"))
    yield workdir / "text"
    mp.undo()


@pytest.fixture(scope="module")
def checkpoint(workdir, text_cache) -> Path:
    """A tiny FC-CLIP whose mask and class heads are scaled up (x100, x30): a random tiny model labels
    every pixel alike, this one gives maps of 1-3 classes, a panoptic segment and distinct instances."""
    family, config = get_family("fcclip"), tiny_config()
    model = tiny_model(seed=0)
    with torch.no_grad():
        model.transformer_decoder.mask_embed.layers[2].weight.mul_(100)
        model.transformer_decoder.class_embed.layers[2].weight.mul_(30)
    settings = family.default_settings(config).override({"min_size": 64, "max_size": 128})
    return save_checkpoint(workdir / "tiny.pth", model, family=family, config=config, settings=settings,
                           train_vocabulary="coco_panoptic")


@pytest.fixture(scope="module")
def photos(workdir) -> list[Path]:
    folder = workdir / "photos"
    folder.mkdir()
    paths = []
    for seed, (height, width) in enumerate(SIZES):
        paths.append(folder / f"photo{seed}.png")
        Image.fromarray(synthetic_photo(height, width, seed=seed)).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def predictor(checkpoint, text_cache) -> Predictor:
    predictor = Predictor.from_pretrained(str(checkpoint), text_cache=TextEmbeddingCache(text_cache), progress=False)
    predictor.set_vocabulary(VOCAB, progress=False)
    return predictor


@pytest.fixture(scope="module")
def run_folder(workdir, checkpoint, photos) -> Path:
    """`vocabseg predict --task all` over the photos."""
    out = workdir / "run"
    assert main(["-q", "predict", str(photos[0].parent), "--model", str(checkpoint), "--vocab", VOCAB,
                 "--task", "all", "--output", str(out)]) == 0
    return out
