"""Recipes of the OVSeg CLIP stages: one YAML preset each (``stage: mine | adapt | prompt | assemble``).

Same rules as the segmenter presets (vocabseg.train.config): no inheritance, every key a field
below, ``key.sub=value`` overrides parsed as YAML, unknown keys are one-line errors.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field

from vocabseg.errors import ConfigError
from vocabseg.train.config import _build, _flatten, apply_overrides, dotted_keys, read_preset

STAGES = ("mine", "adapt", "prompt", "assemble")


@dataclass
class ClipSection:
    model: str = "ViT-L-14"  # open_clip architecture (OpenAI weights, QuickGELU)
    pretrained: str = "openai"  # open_clip tag downloaded when `weights` is null ("none": random, smoke runs)
    weights: str | None = None  # CLIP state dict: open_clip, official fine-tuned .pt, an earlier clip_final.pth
    tiny: bool = False  # the tiny random test CLIP of OVSeg's tiny config (smoke runs, tests)
    mask_prompt_depth: int = 3  # official --mask-emb-depth


@dataclass
class PairsSection:
    root: str = "datasets/ovseg_pairs"  # folder written by the mine stage (pairs.jsonl, crops/)
    num_workers: int = 4  # data-loading processes per GPU
    min_scale: float = 0.9  # RandomResizedCrop area range of the official CLIP training transform
    max_scale: float = 1.0


@dataclass
class ClipSolver:
    lr: float = 5.0e-6  # official: 5e-6 (adaptation), 0.05 (mask prompt tuning)
    weight_decay: float = 0.2  # open_clip default (the scripts keep it); 0 on gains, biases, logit_scale
    mask_weight_decay: float = 0.0  # official --mask_wd
    beta1: float = 0.9  # open_clip's ViT defaults
    beta2: float = 0.98
    eps: float = 1.0e-6
    epochs: int = 5
    max_iter: int | None = None  # overrides epochs (iterations = epochs x pairs / batch_size)
    warmup_iters: int = 100  # linear warmup, then cosine decay to 0
    batch_size: int = 128  # effective batch (contrastive over all of it): 32 per GPU x 4 GPUs
    batch_per_gpu: int = 32
    accum_steps: int | None = None  # None: batch_size / (batch_per_gpu x world size)
    amp: str = "fp16"  # off | fp16 | bf16
    checkpoint_period: int = 1000
    log_period: int = 20
    seed: int = 0


@dataclass
class MineSection:
    images: str = "datasets/coco/train2017"  # image folder
    captions: str = "datasets/coco/annotations/captions_train2017.json"  # COCO-captions JSON
    segmenter: str = "output/ovseg_swinb_vitl_coco_stuff/model_final.pth"  # stage (a) checkpoint or zoo name
    clip_weights: str | None = None  # open_clip state dict replacing the segmenter's CLIP for matching (None: keep)
    captions_per_image: int = 1  # official coco_proposal_1cap: the first caption of each image
    min_objectness: float = 0.0  # drop proposals whose "no object" probability exceeds 1 - this
    mask_threshold: float = 0.4  # proposal probability that makes a pixel part of the crop
    min_score: float = 0.0  # drop a (noun, region) pair whose cosine similarity is below this
    limit: int | None = None  # mine the first N images only
    chunk: int = 32  # regions per CLIP forward pass


@dataclass
class AssembleSection:
    segmenter: str = "output/ovseg_swinb_vitl_coco_stuff/model_final.pth"  # stage (a) checkpoint or zoo name
    clip: str = "output/ovseg_prompt/clip_final.pth"  # stage (c) or (d) clip_final.pth (or official CLIP .pt)


@dataclass
class StageConfig:
    stage: str = "adapt"  # mine | adapt | prompt | assemble
    output: str = "output/ovseg_adapt"  # run folder (mine: the pair dataset; assemble: the checkpoint file)
    device: str = "auto"  # auto | cpu | cuda
    clip: ClipSection = field(default_factory=ClipSection)
    data: PairsSection = field(default_factory=PairsSection)
    solver: ClipSolver = field(default_factory=ClipSolver)
    mine: MineSection = field(default_factory=MineSection)
    assemble: AssembleSection = field(default_factory=AssembleSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The sections each stage reads (besides stage, output, device): what makes two of its runs the same run.
STAGE_SECTIONS = {"mine": ("mine",), "adapt": ("clip", "data", "solver"), "prompt": ("clip", "data", "solver"),
                  "assemble": ("assemble",)}


def stage_settings(config: StageConfig) -> dict:
    """The settings of ``config`` its stage reads, nested as in the preset (a resume compares these)."""
    used = ("stage", "output", "device", *STAGE_SECTIONS[config.stage])
    return {key: value for key, value in config.to_dict().items() if key in used}


def is_stage_preset(data: dict) -> bool:
    """True for a preset of these stages (it has a top-level ``stage`` key)."""
    return "stage" in data


def load_stage_config(preset: str, overrides: list[str] | None = None) -> StageConfig:
    """Preset + overrides -> validated StageConfig."""
    return stage_config_from_dict(apply_overrides(read_preset(preset), overrides or []))


def stage_config_from_dict(data: dict) -> StageConfig:
    keys = dotted_keys(StageConfig)
    unknown = [k for k in _flatten(data) if k not in keys]
    if unknown:
        hint = difflib.get_close_matches(unknown[0], keys, n=1)
        raise ConfigError(f"unknown key {unknown[0]!r}{f' (did you mean {hint[0]!r}?)' if hint else ''}; "
                          f"valid keys: {', '.join(keys)}")
    config = _build(StageConfig, data, prefix="")
    if config.stage not in STAGES:
        raise ConfigError(f"stage={config.stage!r}; use one of {', '.join(STAGES)}")
    return config
