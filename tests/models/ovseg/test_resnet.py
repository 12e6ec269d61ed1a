"""OVSeg's DeepLab ResNet backbone: frozen batch norm, shapes, strides/dilations, checkpoint key names."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vocabseg.models.ovseg.resnet import DeepLabResNet, FrozenBatchNorm2d, resnet101_deeplab

REFERENCE = Path(__file__).resolve().parents[3].parent / "shared" / "reference"


def tiny() -> DeepLabResNet:
    torch.manual_seed(0)
    model = DeepLabResNet(blocks=(1, 2, 1, 3), stem_channels=8, res2_channels=16, bottleneck_channels=4)
    for name, buffer in model.named_buffers():  # non-trivial frozen statistics
        if name.endswith("running_var"):
            buffer.uniform_(0.5, 1.5)
        elif name.endswith("weight"):
            buffer.uniform_(0.5, 1.5)
        else:
            buffer.normal_(0.0, 0.1)
    return model.eval()


def test_frozen_batch_norm_is_the_formula():
    norm = FrozenBatchNorm2d(3)
    w, b = torch.tensor([1.5, -0.5, 2.0]), torch.tensor([0.1, 0.2, -0.3])
    mean, var = torch.tensor([0.3, -1.0, 0.0]), torch.tensor([0.5, 2.0, 1.0])
    norm.weight.copy_(w), norm.bias.copy_(b), norm.running_mean.copy_(mean), norm.running_var.copy_(var)
    x = torch.randn(2, 3, 4, 5)
    scale = w / torch.sqrt(var + 1e-5)
    expected = x * scale.view(1, 3, 1, 1) + (b - mean * scale).view(1, 3, 1, 1)
    torch.testing.assert_close(norm(x), expected)  # fused kernel (no gradients)
    torch.testing.assert_close(norm(x.requires_grad_()), expected)  # explicit formula
    assert list(norm.parameters()) == []
    assert set(norm.state_dict()) == {"weight", "bias", "running_mean", "running_var"}


def test_frozen_batch_norm_does_not_update_in_training():
    norm = FrozenBatchNorm2d(3).train()
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    norm(torch.randn(2, 3, 4, 4) * 5 + 3)
    assert all(torch.equal(before[k], v) for k, v in norm.state_dict().items())


def test_levels_for_odd_input_size():
    model = tiny()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 37, 50))
    # stem: conv/2 -> 19x25, pool/2 -> 10x13; then 5x7, 3x4, 2x2 (res5 has stride 2 despite dilation)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "res2": (1, 16, 10, 13), "res3": (1, 32, 5, 7), "res4": (1, 64, 3, 4), "res5": (1, 128, 2, 2)}
    assert model.out_channels == {"res2": 16, "res3": 32, "res4": 64, "res5": 128}
    assert model.strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}


def test_stride_on_3x3_and_res5_multi_grid():
    model = tiny()
    res5 = list(model.res5)
    assert [b.conv2.dilation for b in res5] == [(1, 1), (2, 2), (4, 4)]
    assert [b.conv2.padding for b in res5] == [(1, 1), (2, 2), (4, 4)]
    assert [b.conv2.stride for b in res5] == [(2, 2), (1, 1), (1, 1)]
    assert all(b.conv1.stride == (1, 1) for stage in (model.res2, model.res3, model.res4, model.res5) for b in stage)
    assert model.res2[0].conv2.stride == (1, 1)
    # projection shortcut exactly on each stage's first block
    assert [b.shortcut is not None for b in model.res3] == [True, False]


def test_gradient_path_matches_inference_path():
    model = tiny()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fused = model(x)
    explicit = model(x.requires_grad_())
    for k in fused:
        torch.testing.assert_close(explicit[k], fused[k], rtol=1e-4, atol=1e-5)


def test_state_dict_keys_match_official_checkpoint():
    manifest_path = REFERENCE / "ovseg" / "manifest_R101c_vitB16.json"
    if not manifest_path.exists():
        pytest.skip("../shared/reference is not available")
    manifest = json.loads(manifest_path.read_text())
    expected = {k[len("backbone."):]: v for k, v in manifest.items() if k.startswith("backbone.")}
    with torch.device("meta"):  # names and shapes only
        state = resnet101_deeplab().state_dict()
    assert set(state) == set(expected)  # no num_batches_tracked: detectron2's FrozenBN has none
    assert {k: list(v.shape) for k, v in state.items()} == {k: v["shape"] for k, v in expected.items()}
