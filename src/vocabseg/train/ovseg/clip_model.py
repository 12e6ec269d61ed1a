"""The CLIP of the adaptation stages: built, loaded, frozen per stage, and saved as ``clip_final.pth``.

Stage ``adapt`` fine-tunes the whole image tower and ``logit_scale`` (the text tower is locked,
as the official ``--lock-text``) and encodes crops without mask prompts. Stage ``prompt``
trains ``visual.mask_embedding`` alone (official ``--lock-image --lock-image-unlocked-groups 0``;
here ``logit_scale`` stays frozen as well, it plays no part in the segmenter, which scores at a
fixed temperature). A CLIP without a mask embedding gets one drawn from N(0, 0.02), as the
official mask prompt tuning initialises it.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from vocabseg.clip.load import build_clip, load_clip_state
from vocabseg.clip.vit import add_mask_prompt, encode_masked_regions
from vocabseg.errors import CheckpointError, ConfigError
from vocabseg.fileio import read_checkpoint, save_torch
from vocabseg.models import get_family
from vocabseg.state_dict import check_state_dict
from vocabseg.train.ovseg.config import ClipSection, ClipSolver

CLIP_FORMAT = "vocabseg-clip-v1"
MASK_EMBEDDING = "visual.mask_embedding"
MASK_INIT_STD = 0.02  # official init_mask_embedding(mode="mae")
logger = logging.getLogger(__name__)


def clip_config(section: ClipSection) -> dict | None:
    """The explicit open_clip config of the tiny test CLIP, else None (a registered architecture)."""
    return get_family("ovseg").tiny_config().clip_config if section.tiny else None


def build_stage_clip(section: ClipSection, *, stage: str) -> Any:
    """An open_clip CLIP with the section's weights, a mask prompt for stage ``prompt``, frozen as the stage wants."""
    clip: Any = build_clip(section.model, quick_gelu=True, clip_config=clip_config(section))
    state = _initial_state(section)
    if stage == "prompt":
        add_mask_prompt(clip, depth=section.mask_prompt_depth)
        if state is not None and MASK_EMBEDDING not in state:
            nn.init.normal_(clip.visual.mask_embedding, std=MASK_INIT_STD)
            state = {**state, MASK_EMBEDDING: clip.visual.mask_embedding.detach().clone()}
        elif state is None:
            nn.init.normal_(clip.visual.mask_embedding, std=MASK_INIT_STD)
    elif state is not None and MASK_EMBEDDING in state:
        logger.warning("%s: the mask embedding is left out; adaptation encodes crops without mask prompts",
                       section.weights)
        state = {k: v for k, v in state.items() if k != MASK_EMBEDDING}
    if state is not None:
        check_state_dict(clip, state, source=str(section.weights or section.model),
                         fix=f"give clip.weights of an open_clip {section.model} (clip.model)")
        clip.load_state_dict(state)
    freeze_for_stage(clip, stage)
    return clip


def _initial_state(section: ClipSection) -> dict | None:
    if not section.weights and (section.tiny or section.pretrained == "none"):
        return None  # random weights (tests, smoke runs, benchmarks)
    state, _ = load_clip_state(section.model, section.pretrained, section.weights)
    return state


def freeze_for_stage(clip: nn.Module, stage: str) -> None:
    for name, param in clip.named_parameters():
        if stage == "adapt":
            param.requires_grad_(name.startswith("visual.") or name == "logit_scale")
        else:
            param.requires_grad_(name == MASK_EMBEDDING)


def param_groups(clip: nn.Module, solver: ClipSolver) -> list[dict]:
    """Official groups: no decay on gains, biases, norms, logit_scale; ``mask_weight_decay`` on the mask embedding."""
    groups: dict[str, list[nn.Parameter]] = {"no_decay": [], "mask_embedding": [], "decay": []}
    for name, param in clip.named_parameters():
        if not param.requires_grad:
            continue
        if name == MASK_EMBEDDING:
            groups["mask_embedding"].append(param)
        elif param.ndim < 2 or "ln" in name or "bn" in name or "bias" in name or "logit_scale" in name:
            groups["no_decay"].append(param)
        else:
            groups["decay"].append(param)
    decay = {"no_decay": 0.0, "mask_embedding": solver.mask_weight_decay, "decay": solver.weight_decay}
    return [{"name": k, "params": v, "weight_decay": decay[k]} for k, v in groups.items() if v]


class RegionEncoder(nn.Module):
    """What DDP wraps: masked crops -> unnormalised CLIP image features, and the contrastive scale."""

    def __init__(self, clip: Any, *, mask_prompt_depth: int):
        super().__init__()
        self.clip, self.depth = clip, mask_prompt_depth

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, 3, S, S], [N, 1, S, S] -> ([N, D] features, scalar exp(logit_scale))."""
        features = encode_masked_regions(self.clip.visual, images, masks if self.depth else None, depth=self.depth)
        return features, self.clip.logit_scale.exp()


def save_clip(path, clip: nn.Module, *, section: ClipSection, stage: str) -> None:
    """``clip_final.pth``: the whole CLIP state dict (open_clip names) and what it is."""
    state = {k: v.detach().cpu() for k, v in clip.state_dict().items()}
    save_torch(path, {"format": CLIP_FORMAT, "model": section.model, "clip_config": clip_config(section),
                      "stage": stage, "mask_prompt_depth": section.mask_prompt_depth if stage == "prompt" else 0,
                      "state_dict": state})


def read_clip_file(path: str) -> tuple[dict, int | None]:
    """A CLIP state dict (vocabseg ``clip_final.pth`` or an official open_clip checkpoint) and its mask-prompt depth."""
    data = read_checkpoint(path)
    state = data.get("state_dict", data)
    if not isinstance(state, dict) or not any(str(k).removeprefix("module.").startswith("visual.") for k in state):
        raise CheckpointError(f"{path} is not a CLIP checkpoint (no visual.* weights); give a clip_final.pth")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    depth = data.get("mask_prompt_depth") if data.get("format") == CLIP_FORMAT else None
    if depth is None and MASK_EMBEDDING in state:
        depth = int(state[MASK_EMBEDDING].shape[0])
    return state, depth


def check_stage(stage: str) -> None:
    if stage not in ("adapt", "prompt"):
        raise ConfigError(f"stage {stage!r} does not train a CLIP; use adapt or prompt")
