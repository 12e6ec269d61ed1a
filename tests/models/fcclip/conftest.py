"""Shared fixtures for the model tests: tiny random-weight FC-CLIPs that build in about a second.

The CLIP towers are open_clip models made from an explicit config (a ConvNeXt-atto
through timm, or a one-block-per-stage ModifiedResNet) at 64x64 native resolution,
so nothing is downloaded and the whole suite runs on two CPU cores.
"""
from __future__ import annotations

from typing import Callable

import pytest
import torch

from vocabseg.models.fcclip.build import build_fcclip
from vocabseg.model.config import FCCLIPConfig
from vocabseg.models.fcclip.model import FCCLIP

EMBED_DIM = 32  # CLIP joint embedding size of the tiny CLIPs
TEXT_CFG = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
VISION_CFGS = {
    "convnext": {
        "timm_model_name": "convnext_atto", "timm_model_pretrained": False,
        "timm_pool": "", "timm_proj": "mlp", "image_size": 64,
    },
    "resnet": {"layers": [1, 1, 1, 1], "width": 8, "image_size": 64, "patch_size": None},
}


def _tiny_config(kind: str) -> FCCLIPConfig:
    clip_config = {"embed_dim": EMBED_DIM, "vision_cfg": VISION_CFGS[kind], "text_cfg": TEXT_CFG}
    return FCCLIPConfig(
        clip_model_name=f"tiny-{kind}", clip_config=clip_config, embed_dim=EMBED_DIM,
        num_queries=10, hidden_dim=32, nheads=4, dim_feedforward=64, dec_layers=3,
        mask_dim=32, conv_dim=32, enc_layers=1, enc_ffn_dim=64, enc_heads=4,
    )


def _build_tiny(kind: str, seed: int = 0) -> FCCLIP:
    torch.manual_seed(seed)
    return build_fcclip(_tiny_config(kind))


@pytest.fixture(autouse=True)
def _tiny_models_on_one_thread(one_thread):
    """Every model test runs its tiny networks on one thread (see tests/conftest.py)."""


@pytest.fixture(scope="session")
def tiny_config() -> Callable[[str], FCCLIPConfig]:
    """``tiny_config(kind) -> FCCLIPConfig`` for kind "convnext" or "resnet" (embed_dim 32,
    10 queries, width 32, 3 decoder layers, 1 encoder layer)."""
    return _tiny_config


@pytest.fixture(scope="session")
def make_tiny_model() -> Callable[..., FCCLIP]:
    """``make_tiny_model(kind, seed=0) -> FCCLIP``: a fresh model, for tests that train or edit it."""
    return _build_tiny


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, FCCLIP]:
    """One shared eval-mode model per backbone kind. Read-only: do not edit or backprop."""
    return {kind: _build_tiny(kind).eval() for kind in VISION_CFGS}


@pytest.fixture(params=sorted(VISION_CFGS))
def backbone_kind(request: pytest.FixtureRequest) -> str:
    """Parametrises a test over both CLIP families."""
    return request.param
