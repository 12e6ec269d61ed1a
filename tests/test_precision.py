"""The fast-mode rule (vocabseg.precision.choose_recipe) under simulated CPUs, each in a fresh
interpreter: torch reads ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA when it starts."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from vocabseg.layers.int8_linear import int8_available
from vocabseg.precision import _onednn_bf16_allowed, choose_recipe, fast_int8, inference_precision

CPU = torch.device("cpu")
INT8 = " + int8 linears" if int8_available(CPU)[0] else ""  # x86 CPUs: fbgemm's int8 kernels
PROBE = ("import torch; from vocabseg.precision import choose_recipe; "
         "r = choose_recipe('fast', torch.device('cpu')); print(r.bf16, r.channels_last, r.describe())")


def _decide(**env: str) -> str:
    """The fast recipe's (bf16, channels_last, description) printed by a fresh interpreter under ``env``."""
    clean = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                                                    "FBGEMM_ENABLE_INSTRUCTIONS")}
    done = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout.strip()


def test_avx2_kernels_pick_the_fp32_recipe_on_any_cpu():
    line = _decide(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", FBGEMM_ENABLE_INSTRUCTIONS="AVX2")
    assert line.startswith(f"False False fast: fp32 recipe{INT8}, no native bf16 on this CPU"), line


def test_a_onednn_cap_below_bf16_picks_the_fp32_recipe():
    line = _decide(ONEDNN_MAX_CPU_ISA="AVX2")
    assert line.startswith(f"False False fast: fp32 recipe{INT8}, no native bf16 on this CPU"), line


def test_a_native_bf16_cpu_picks_bf16_unrestricted():
    if not (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        pytest.skip("this CPU has neither AVX512_BF16 nor AMX")
    if torch.backends.cpu.get_cpu_capability() != "AVX512":  # run under ATEN_CPU_CAPABILITY=avx2 itself
        pytest.skip("the test process runs with restricted kernels")
    line = _decide()
    assert line.startswith(f"True True fast: bf16 recipe{INT8}, native bf16 on this CPU"), line


def test_exact_forced_and_default_recipes():
    exact = choose_recipe("fp32", CPU)
    assert not (exact.fast or exact.bf16 or exact.channels_last)
    assert not choose_recipe("auto", CPU).fast  # the default stays exact off CUDA
    forced = choose_recipe("bf16", CPU)
    assert forced.fast and forced.bf16 and forced.channels_last and "forced" in forced.describe()
    assert choose_recipe("fast", CPU).fast
    assert choose_recipe("fast", CPU).int8 == int8_available(CPU)[0]
    assert not (exact.int8 or forced.int8)  # int8 only where fast mode picks by hardware


@pytest.mark.parametrize("isa, allowed", [("AVX2", False), ("avx512_core", False), ("AVX512_CORE_BF16", True),
                                          ("AVX512_CORE_AMX", True), ("ALL", True)])
def test_onednn_isa_caps(isa, allowed):
    assert _onednn_bf16_allowed(isa) is allowed


def test_int8_layers_only_without_gradients():
    """fast_int8() is the one switch every family reads: off where gradients are taken (int8 products have none)."""
    recipe = choose_recipe("fast", CPU)
    if not recipe.int8:
        pytest.skip("no int8 linears on this CPU")
    model = torch.nn.Linear(2, 2)
    assert not fast_int8()  # outside fast inference
    with inference_precision(model, CPU, recipe):
        with torch.no_grad():
            assert fast_int8()
        with torch.enable_grad():
            assert not fast_int8()
