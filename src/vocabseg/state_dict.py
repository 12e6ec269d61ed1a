"""Strict state-dict checks with one-line errors."""
from __future__ import annotations

from collections.abc import Mapping

import torch

from vocabseg.errors import CheckpointError


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str,
                     optional_prefixes: tuple[str, ...] = (),
                     fix: str = "is it a checkpoint of another model? pass the matching --model") -> None:
    """Raises a one-line :class:`CheckpointError` listing missing, unexpected and mis-shaped keys.

    Args:
        optional_prefixes: keys of ``model`` under these prefixes may be absent from ``state``
            (e.g. a frozen CLIP loaded from its own file).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.startswith(optional_prefixes or ("\0",))]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if keys:
            problems.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
    if problems:
        raise CheckpointError(f"{source} does not fit this architecture: {'; '.join(problems)}; {fix}")
