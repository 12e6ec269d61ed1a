"""model.backbone_init: a backbone's ImageNet release (OVSeg's official starting point) loads into the backbone only."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from vocabseg.errors import CheckpointError
from vocabseg.testing import tiny_model
from vocabseg.train.checkpoint import load_backbone_weights


def _release(backbone: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The backbone as a classification release names it: no per-level output norms, a final norm and a head."""
    state = {k: v.clone() for k, v in backbone.state_dict().items() if not k.startswith(("norm0", "norm1",
                                                                                          "norm2", "norm3"))}
    width = state["layers.0.blocks.0.norm1.weight"].shape[0] if "layers.0.blocks.0.norm1.weight" in state else 8
    return {**state, "norm.weight": torch.ones(width), "head.weight": torch.zeros(10, width),
            "layers.0.blocks.1.attn_mask": torch.zeros(4, 16, 16)}  # Swin releases keep their shift masks


@pytest.mark.parametrize("kind", ["swin", "resnet"])
def test_release_loads_into_the_backbone_only(kind, tmp_path):
    source = tiny_model(kind, seed=1, family="ovseg")
    target = tiny_model(kind, seed=2, family="ovseg")
    path = tmp_path / "release.pth"
    torch.save({"model": _release(source.backbone)}, path)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    loaded = load_backbone_weights(target, path)
    assert loaded > 0
    for key, value in target.backbone.state_dict().items():
        if not key.startswith(("norm0", "norm1", "norm2", "norm3")):
            assert torch.equal(value, source.backbone.state_dict()[key]), key
    others = [k for k in before if not k.startswith("backbone.")]
    assert all(torch.equal(before[k], target.state_dict()[k]) for k in others)


def test_detectron2_pkl_with_backbone_prefix_loads(tmp_path):
    source, target = tiny_model("resnet", seed=1, family="ovseg"), tiny_model("resnet", seed=2, family="ovseg")
    arrays = {f"backbone.{k}": v.numpy() for k, v in source.backbone.state_dict().items()}
    with open(tmp_path / "R-103.pkl", "wb") as f:
        pickle.dump({"model": arrays, "__author__": "third_party"}, f)
    load_backbone_weights(target, tmp_path / "R-103.pkl")
    key = next(iter(source.backbone.state_dict()))
    assert np.array_equal(target.backbone.state_dict()[key].numpy(), arrays[f"backbone.{key}"])


def test_a_release_of_another_architecture_is_one_line(tmp_path):
    swin, resnet = tiny_model("swin", family="ovseg"), tiny_model("resnet", family="ovseg")
    torch.save({"model": _release(resnet.backbone)}, tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match=r"does not fit the SwinTransformer backbone: \d+ missing") as error:
        load_backbone_weights(swin, tmp_path / "resnet.pth")
    assert "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match="has no separate backbone"):
        load_backbone_weights(torch.nn.Linear(2, 2), tmp_path / "resnet.pth")
