"""Tiny random-weight FC-CLIPs for the FC-CLIP tests, built in about a second.

They are :func:`vocabseg.testing.tiny_model`: open_clip towers made from an explicit config
(a ConvNeXt-atto through timm, or a one-block-per-stage ModifiedResNet) at 64x64 native
resolution, so nothing is downloaded and the tests run on two CPU cores.
"""
from __future__ import annotations

import pytest

from vocabseg.models.fcclip import FCCLIP
from vocabseg.testing import TINY_KINDS, tiny_model

KINDS = list(TINY_KINDS)  # "convnext", "resnet"


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, FCCLIP]:
    """One shared eval-mode model per backbone kind. Read-only: do not edit or backprop."""
    return {kind: tiny_model(kind).eval() for kind in KINDS}


@pytest.fixture(params=KINDS)
def backbone_kind(request: pytest.FixtureRequest) -> str:
    """Parametrises a test over both CLIP kinds."""
    return request.param
