"""FC-CLIP's architecture config and its own test-time settings; both travel inside checkpoints."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from vocabseg.models.protocol import config_from_dict

CLIP_PIXEL_MEAN = (122.7709383, 116.7460125, 104.09373615)  # CLIP's mean, 0-255 scale
CLIP_PIXEL_STD = (68.5005327, 66.6321579, 70.32316305)


@dataclass(frozen=True)
class FCCLIPConfig:
    """Everything needed to build an FC-CLIP with the right shapes."""

    clip_model_name: str = "convnext_large_d_320"  # open_clip architecture name
    clip_pretrained: str = "laion2b_s29b_b131k_ft_soup"  # open_clip pretrained tag of the frozen CLIP
    quick_gelu: bool = False  # OpenAI CLIPs were trained with QuickGELU in the text tower
    clip_config: dict | None = None  # explicit open_clip model config (custom CLIPs, tests); overrides the name
    embed_dim: int = 768  # CLIP joint embedding size
    num_queries: int = 250
    hidden_dim: int = 256  # transformer decoder width
    nheads: int = 8
    dim_feedforward: int = 2048  # transformer decoder FFN
    dec_layers: int = 9  # masked-attention layers (plus one prediction from the learnable queries)
    mask_dim: int = 256
    conv_dim: int = 256  # pixel decoder width
    enc_layers: int = 6  # deformable encoder layers
    enc_ffn_dim: int = 1024
    enc_heads: int = 8
    enc_points: int = 4
    pixel_mean: tuple[float, float, float] = CLIP_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = CLIP_PIXEL_STD
    size_divisibility: int = 32  # inputs are zero-padded (after normalisation) to a multiple of this

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FCCLIPConfig:
        return config_from_dict(cls, values, "FC-CLIP architecture config")


@dataclass(frozen=True)
class FCCLIPSettings:
    """FC-CLIP's own test-time settings: the geometric ensemble (official evaluation defaults)."""

    ensemble_alpha: float = 0.4  # out-of-vocabulary weight for classes seen in training
    ensemble_beta: float = 0.8  # out-of-vocabulary weight for unseen classes
    ensemble_on_valid_mask: bool = False  # use the CLIP score only where the mask is non-empty (ResNet CLIPs)

    @classmethod
    def from_dict(cls, values: dict) -> FCCLIPSettings:
        return config_from_dict(cls, values, "FC-CLIP setting")
