"""Tiny configurations and synthetic inputs for tests, smoke runs and examples (no downloads)."""
from __future__ import annotations

import numpy as np

from vocabseg.models.fcclip.config import FCCLIPConfig

TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
TINY_VISION = {
    "convnext": {"timm_model_name": "convnext_atto", "timm_model_pretrained": False, "timm_pool": "",
                 "timm_proj": "mlp", "image_size": 64},
    "resnet": {"layers": [1, 1, 1, 1], "width": 8, "image_size": 64, "patch_size": None},
}


def tiny_config(kind: str = "convnext") -> FCCLIPConfig:
    """A few-million-parameter FC-CLIP with the full architecture (random weights only)."""
    clip = {"embed_dim": 32, "vision_cfg": TINY_VISION[kind], "text_cfg": TINY_TEXT}
    return FCCLIPConfig(clip_model_name=f"tiny_{kind}", clip_pretrained="none", clip_config=clip, embed_dim=32,
                        num_queries=10, hidden_dim=32, nheads=4, dim_feedforward=64, dec_layers=3, mask_dim=32,
                        conv_dim=32, enc_layers=1, enc_ffn_dim=64, enc_heads=4)


def synthetic_photo(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth colour gradient with a few filled discs: HxWx3 uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 / width, yy * 255 / height, np.full_like(xx, 128)], -1).astype(np.float32)
    for _ in range(3):
        cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(8, 30)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.integers(0, 255, 3)
    return image.astype(np.uint8)


def tiny_model(kind: str = "convnext", seed: int = 0):
    """A random-weight FC-CLIP of :func:`tiny_config` (deterministic for a seed)."""
    import torch

    from vocabseg.models.fcclip.build import build_fcclip

    torch.manual_seed(seed)
    return build_fcclip(tiny_config(kind))


def save_tiny_checkpoint(path, *, kind: str = "convnext", seed: int = 0, min_size: int = 64, max_size: int = 128,
                         train_vocabulary: str = "coco_panoptic"):
    """Writes a vocabseg checkpoint of a seeded tiny FC-CLIP tested at ``min_size``/``max_size``; returns the path."""
    from vocabseg.checkpoints import save_checkpoint
    from vocabseg.models import get_family

    family = get_family("fcclip")
    config = tiny_config(kind)
    settings = family.default_settings(config).override({"min_size": min_size, "max_size": max_size})
    return save_checkpoint(path, tiny_model(kind, seed), family=family, config=config, settings=settings,
                           train_vocabulary=train_vocabulary)
