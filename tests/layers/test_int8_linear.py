"""Int8 linears (vocabseg.layers.int8_linear): close to float32, packed once, repacked when weights change,
and exact in their integer arithmetic under AVX2 kernels (fbgemm's 7-bit activations cannot saturate)."""
from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from vocabseg.layers import int8_linear as int8
from vocabseg.layers.int8_linear import int8_available, int8_linear

CPU = torch.device("cpu")
pytestmark = pytest.mark.skipif(not int8_available(CPU)[0], reason="no fbgemm int8 kernels on this CPU")


def _relative_error(layer: nn.Linear, x: torch.Tensor) -> float:
    with torch.no_grad():
        reference = layer(x)
        return float((int8_linear(layer, x) - reference).norm() / reference.norm())


def test_close_to_float32_on_any_leading_shape():
    torch.manual_seed(0)
    layer = nn.Linear(96, 160)
    x = torch.randn(2, 7, 96)
    with torch.no_grad():
        out = int8_linear(layer, x)
    assert out.shape == (2, 7, 160) and out.dtype == torch.float32
    assert _relative_error(layer, x) < 0.04  # the activation step (7 bits over the range): about 2%


def test_without_bias_and_from_bf16_input():
    torch.manual_seed(1)
    layer = nn.Linear(64, 32, bias=False)
    x = torch.randn(10, 64)
    with torch.no_grad():
        out = int8_linear(layer, x.bfloat16())
        assert float((out - layer(x)).norm() / layer(x).norm()) < 0.05


def test_a_1x1_convolution_as_the_linear_of_its_weight():
    torch.manual_seed(2)
    conv = nn.Conv2d(24, 40, kernel_size=1)
    x = torch.randn(2, 24, 5, 6)
    with torch.no_grad():
        reference = conv(x).permute(0, 2, 3, 1)  # [B, H, W, out]
        out = int8_linear(conv, x.permute(0, 2, 3, 1))  # channels-last rows [B, H, W, in]
    assert out.shape == reference.shape
    assert 0 < float((out - reference).norm() / reference.norm()) < 0.04


def test_weights_packed_once_and_again_after_a_change():
    layer = nn.Linear(32, 32)
    x = torch.randn(4, 32)
    with torch.no_grad():
        int8_linear(layer, x)
        first = int8._PACKED[layer][1]
        int8_linear(layer, x)
        assert int8._PACKED[layer][1] is first  # reused while the weights stay
        layer.weight.mul_(3.0)  # an in-place change (a loaded checkpoint, a training step)
        assert _relative_error(layer, x) < 0.04  # repacked: the new weights' output
        assert int8._PACKED[layer][1] is not first


def test_a_deleted_layer_leaves_no_packed_weights():
    layer = nn.Linear(16, 16)
    with torch.no_grad():
        int8_linear(layer, torch.randn(3, 16))
    before = len(int8._PACKED)
    del layer
    gc.collect()
    assert len(int8._PACKED) == before - 1  # weak keys: the packed copy goes with its layer


def test_the_packed_weights_stay_out_of_the_state_dict():
    layer = nn.Linear(16, 16)
    with torch.no_grad():
        int8_linear(layer, torch.randn(3, 16))
    assert set(layer.state_dict()) == {"weight", "bias"}


def test_no_int8_off_the_cpu():
    assert not int8_available(torch.device("meta"))[0]


AVX2_PROBE = """
import torch
from vocabseg.layers.int8_linear import int8_linear
torch.manual_seed(0)
layer = torch.nn.Linear(256, 64, bias=False)
with torch.no_grad():
    layer.weight.fill_(1.0)
    x = torch.full((8, 256), 5.0)  # the largest activations: every pair sum at its maximum
    x[:, ::2] = -5.0
    x[0] = 5.0
    print(float(int8_linear(layer, x)[0, 0]), float(int8_linear(layer, x)[1, 0]))
"""


def test_avx2_kernels_do_not_saturate():
    """A real AVX2 CPU (no VNNI) adds int8 products in 16-bit pairs: extreme values must still add up."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
           "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}
    done = subprocess.run([sys.executable, "-c", AVX2_PROBE], env=env, capture_output=True, text=True, timeout=120,
                          check=True)
    full, alternating = (float(v) for v in done.stdout.split())
    assert full == pytest.approx(256 * 5.0, rel=0.02)
    assert alternating == pytest.approx(0.0, abs=0.05 * 256 * 5.0)
