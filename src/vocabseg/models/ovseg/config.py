"""OVSeg's architecture config and its own test-time settings; both travel inside checkpoints."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from vocabseg.models.protocol import config_from_dict

IMAGENET_PIXEL_MEAN = (123.675, 116.28, 103.53)  # the MaskFormer branch's input normalisation, 0-255 RGB
IMAGENET_PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class OVSegConfig:
    """Everything needed to build an OVSeg with the right shapes."""

    backbone: str = "swin_base"  # swin_base | resnet101_deeplab ("R101c") | swin_tiny_test | resnet_tiny_test
    clip_model_name: str = "ViT-L-14"  # open_clip architecture of the mask-adapted CLIP (OpenAI, QuickGELU)
    clip_pretrained: str = "openai"  # only used to fetch CLIP weights a checkpoint lacks
    clip_config: dict | None = None  # explicit open_clip model config (custom CLIPs, tests); overrides the name
    embed_dim: int = 768  # CLIP joint embedding size (the class head's output)
    mask_prompt_depth: int = 3  # learned mask-prompt layers of the CLIP ViT (0: plain CLIP)
    num_queries: int = 100
    hidden_dim: int = 256  # transformer decoder width
    nheads: int = 8
    dim_feedforward: int = 2048
    dec_layers: int = 6
    conv_dim: int = 256  # FPN width
    mask_dim: int = 256
    embed_hidden_dim: int = 1024  # class-embedding MLP hidden width
    embed_layers: int = 2
    pixel_mean: tuple[float, float, float] = IMAGENET_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_PIXEL_STD
    size_divisibility: int = 32

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> OVSegConfig:
        return config_from_dict(cls, values, "OVSeg architecture config")


@dataclass(frozen=True)
class OVSegSettings:
    """OVSeg's own test-time settings (official evaluation defaults of the Swin-B model on ADE20K).

    ``ensemble_weight`` w mixes the proposal classifier p and the CLIP region classifier c
    as p^(1-w) * c^w; the paper tunes it per benchmark (0.7 ADE, 0.6 Pascal Context,
    0.45 VOC). w = 0 is the official demo's CLIP-only mode.
    """

    ensemble_weight: float = 0.7
    mask_threshold: float = 0.4  # mask probability that makes a pixel part of a CLIP region crop
    clip_ensemble: bool = True  # False: the proposal classifier alone
    demo_mode: bool = False  # the official demo: each class keeps its single best region, hard masks
    region_batch: int = 32  # CLIP regions per forward pass (memory bound; same numbers)

    @classmethod
    def from_dict(cls, values: dict) -> OVSegSettings:
        return config_from_dict(cls, values, "OVSeg setting")
