"""Tiny random-weight open_clip CLIPs (the towers of vocabseg.testing's tiny configs) as backbones."""
from __future__ import annotations

import pytest

from vocabseg.clip import CLIPBackbone, build_clip
from vocabseg.testing import TINY_KINDS, tiny_config

KINDS = list(TINY_KINDS)  # "convnext", "resnet"


def tiny_backbone(kind: str, seed: int = 0) -> CLIPBackbone:
    import torch

    torch.manual_seed(seed)
    config = tiny_config(kind)
    return CLIPBackbone(build_clip(config.clip_model_name, clip_config=config.clip_config))


@pytest.fixture(autouse=True)
def _tiny_towers_on_one_thread(one_thread):
    """See tests/conftest.py."""


@pytest.fixture(scope="session")
def tiny_backbones() -> dict[str, CLIPBackbone]:
    """One shared backbone per CLIP kind. Read-only: do not edit or backprop."""
    return {kind: tiny_backbone(kind) for kind in KINDS}


@pytest.fixture(scope="session")
def make_backbone():
    """``make_backbone(kind, seed=0) -> CLIPBackbone``: a fresh one, for tests that change it."""
    return tiny_backbone


@pytest.fixture(params=KINDS)
def backbone_kind(request: pytest.FixtureRequest) -> str:
    """Parametrises a test over both CLIP kinds."""
    return request.param
