"""Cascade-CLIP's architecture config and its own test-time settings; both travel inside checkpoints."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from vocabseg.models.protocol import config_from_dict
from vocabseg.text.templates import CASCADE_CLIP_TEMPLATES

# mmseg's ImageNet normalisation of 0-255 RGB input (the official configs' img_norm_cfg)
IMAGENET_PIXEL_MEAN = (123.675, 116.28, 103.53)
IMAGENET_PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class CascadeCLIPConfig:
    """Everything needed to build a Cascade-CLIP with the right shapes (official: CLIP ViT-B/16 at 512)."""

    clip_model_name: str = "ViT-B-16"  # open_clip architecture (OpenAI weights, QuickGELU)
    clip_pretrained: str = "openai"  # where CLIP weights come from when training starts from CLIP
    clip_config: dict | None = None  # explicit open_clip model config (custom CLIPs, tests); overrides the name
    image_size: int = 512  # crop / sliding-window side the ViT runs at (positional grid image_size / patch)
    embed_dim: int = 512  # CLIP joint space: text embeddings, projected levels, decoder width
    prompt_tokens: int = 10  # visual prompt tokens per layer (official: 10 VOC, 35 Context, 50 COCO)
    prompt_norm_eps: float = 1e-6  # the official prompt_norm LayerNorm's eps (the CLIP norms use 1e-5)
    level_blocks: tuple[int, ...] = (5, 6, 7, 8, 9, 10)  # 0-based ViT blocks whose outputs become levels
    stage_levels: tuple[tuple[int, ...], ...] = ((0, 1, 2), (3, 4, 5))  # levels fused per stage; the
    # last stage reads the final (ln_post + proj) feature
    fusion_init: tuple[float, float, float] = (0.1353352832366127, 0.6065306597126334, 1.0)  # exp(-[2,1,0]^2/2)
    decoder_layers: int = 3  # layers per cascaded decoder
    decoder_heads: int = 8
    decoder_ffn: int = 2048
    dropout: float = 0.1  # prompt, attention and decoder dropout in training
    drop_path_rate: float = 0.1  # stochastic depth over the ViT blocks in training (linear in depth)
    pixel_mean: tuple[float, float, float] = IMAGENET_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_PIXEL_STD
    # The prompts each class name is embedded with (averaged): what the official embeddings of the
    # variant's dataset used, in training as at test (VOC-20: one template; Context-59, COCO-Stuff: 15).
    prompt_templates: tuple[str, ...] = CASCADE_CLIP_TEMPLATES

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> CascadeCLIPConfig:
        values = dict(values)
        if isinstance(values.get("stage_levels"), list):  # YAML/JSON nest lists
            values["stage_levels"] = tuple(tuple(levels) for levels in values["stage_levels"])
        return config_from_dict(cls, values, "Cascade-CLIP architecture config")


@dataclass(frozen=True)
class CascadeCLIPSettings:
    """Cascade-CLIP's own test-time settings (the official mmseg test config).

    The inductive models subtract ``seen_offset`` from the sigmoid scores of the classes seen in
    training, so that unseen classes can win; the transductive models use 0.
    """

    seen_offset: float = 0.1
    window: int = 512  # sliding-window side, in resized-image pixels
    stride: int = 426  # sliding-window step
    window_batch: int = 4  # windows per forward pass (memory bound; same numbers)

    @classmethod
    def from_dict(cls, values: dict) -> CascadeCLIPSettings:
        return config_from_dict(cls, values, "Cascade-CLIP setting")
