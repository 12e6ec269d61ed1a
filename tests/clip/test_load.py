"""Tests for vocabseg.clip.load: building open_clip models and loading frozen CLIP weights."""
from __future__ import annotations

import pytest
import torch

from vocabseg.clip.load import build_clip, create_clip, load_clip_weights
from vocabseg.errors import CheckpointError, ConfigError
from vocabseg.testing import tiny_config


def _tiny_clip(seed: int):
    torch.manual_seed(seed)
    config = tiny_config("resnet")
    return build_clip(config.clip_model_name, clip_config=config.clip_config)


def test_unknown_open_clip_name_says_where_to_look():
    with pytest.raises(ConfigError, match="unknown open_clip model 'no-such-clip'.*list_models"):
        create_clip("no-such-clip")


def test_weights_from_a_file_load_and_name_their_origin(tmp_path):
    source, target = _tiny_clip(0), _tiny_clip(1)
    # as saved by DataParallel training: the "module." prefix is dropped
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "clip.pt")
    origin = load_clip_weights(target, "tiny_resnet", "none", str(tmp_path / "clip.pt"))
    assert origin == str(tmp_path / "clip.pt")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_weights_of_another_clip_are_a_one_line_error(tmp_path):
    torch.save({"visual.proj": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError) as info:
        load_clip_weights(_tiny_clip(0), "tiny_resnet", "none", str(tmp_path / "other.pt"))
    message = str(info.value)
    assert "not an open_clip state dict of tiny_resnet" in message and "\n" not in message


def test_unknown_pretrained_tag_asks_for_a_file():
    with pytest.raises(CheckpointError, match="no pretrained tag 'none'.*--clip-weights"):
        load_clip_weights(_tiny_clip(0), "RN50", "none", None)
