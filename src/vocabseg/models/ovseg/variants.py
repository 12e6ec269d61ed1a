"""The released OVSeg models: architecture, test-time settings and official weights.

Figures under ``reported`` are the official README's mIoU (A-847, PC-459, A-150, PC-59, PAS-20)
with the per-benchmark ensemble weights of the official evaluation commands.
"""
from __future__ import annotations

from collections.abc import Callable

from vocabseg.models.ovseg.config import OVSegConfig, OVSegSettings
from vocabseg.models.protocol import InferenceConfig, ModelVariant, Settings, WeightsSpec

REPORTED_COLUMNS = ("a847_miou", "pc459_miou", "ade20k_miou", "pc59_miou", "pas20_miou")

# Official ensemble weight per benchmark vocabulary (GETTING_STARTED.md): the yaml's 0.7 for
# ADE20K, 0.6 for Pascal Context, 0.45 for Pascal VOC.
BENCHMARK_ENSEMBLE_WEIGHTS = {
    "ade20k_150": 0.7, "ade20k_847": 0.7, "pascal_context_59": 0.6, "pascal_context_459": 0.6, "pascal_voc_20": 0.45,
}


def _gdrive(file_id: str) -> str:
    # The usercontent endpoint with confirm=t skips Google Drive's "cannot scan for viruses" page.
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


def _reported(*values: float) -> dict[str, float]:
    return dict(zip(REPORTED_COLUMNS, values, strict=True))


def _swin_vitl14(name: str, weights: WeightsSpec, description: str, reported: dict[str, float]) -> ModelVariant:
    return ModelVariant(
        name=name, family="ovseg",
        config=OVSegConfig(backbone="swin_base", clip_model_name="ViT-L-14", embed_dim=768),
        settings=Settings(InferenceConfig(min_size=640, max_size=2560), OVSegSettings(mask_threshold=0.4)),
        weights=weights, train_vocabulary="coco_stuff", description=description, reported=reported,
    )


def ovseg_swinb_vitl14_coco() -> ModelVariant:
    return _swin_vitl14(
        "ovseg_swinb_vitl14_coco",
        WeightsSpec("ovseg_swinbase_vitL14_ft_mpt.pth", _gdrive("1cn-ohxgXDrDfkzC1QdO-fi8IjbjXmgKy")),
        "OVSeg Swin-B proposals + mask-adapted CLIP ViT-L/14 (fine-tuned + mask prompt), trained on COCO-Stuff",
        _reported(9.0, 12.4, 29.6, 55.7, 94.5),
    )


def ovseg_swinb_vitl14_mpt_only_coco() -> ModelVariant:
    # The ablation of Table 3: CLIP weights as released by OpenAI, only the mask prompt learned.
    # The README gives no figures for it in its results table, so none are listed.
    return _swin_vitl14(
        "ovseg_swinb_vitl14_mpt_only_coco",
        WeightsSpec("ovseg_swinbase_vitL14_mpt_only.pt", _gdrive("1LJGWFjHw76OGDNy9r9KQIaACfIm9KMhQ")),
        "OVSeg Swin-B + CLIP ViT-L/14 with mask prompt tuning only (CLIP weights unchanged), the paper's ablation",
        {},
    )


def ovseg_r101c_vitb16_coco() -> ModelVariant:
    return ModelVariant(
        name="ovseg_r101c_vitb16_coco", family="ovseg",
        config=OVSegConfig(backbone="resnet101_deeplab", clip_model_name="ViT-B-16", embed_dim=512),
        settings=Settings(InferenceConfig(min_size=512, max_size=2048), OVSegSettings(mask_threshold=0.5)),
        weights=WeightsSpec("ovseg_R101c_vitB16_ft_mpt.pth", _gdrive("1ZmeFMEkhuLqaWkhz4t4IlQ8YflrYja8q")),
        train_vocabulary="coco_stuff",
        description="OVSeg R101c proposals + mask-adapted CLIP ViT-B/16 (fine-tuned + mask prompt), trained on "
                    "COCO-Stuff",
        reported=_reported(7.1, 11.0, 24.8, 53.3, 92.6),
    )


VARIANTS: dict[str, Callable[[], ModelVariant]] = {
    "ovseg_swinb_vitl14_coco": ovseg_swinb_vitl14_coco,
    "ovseg_swinb_vitl14_mpt_only_coco": ovseg_swinb_vitl14_mpt_only_coco,
    "ovseg_r101c_vitb16_coco": ovseg_r101c_vitb16_coco,
}

# A tiny OpenAI-style ViT CLIP for tests and smoke runs (random weights; nothing is downloaded).
_TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "patch_size": 32, "width": 32, "layers": 3, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def tiny_config(kind: str = "swin") -> OVSegConfig:
    """A tiny OVSeg on a small Swin (``"swin"``) or DeepLab ResNet (``"resnet"``) with a tiny ViT CLIP."""
    backbone = {"swin": "swin_tiny_test", "resnet": "resnet_tiny_test"}[kind]
    return OVSegConfig(backbone=backbone, clip_model_name="tiny_vit", clip_pretrained="none", clip_config=_TINY_CLIP,
                       embed_dim=32, mask_prompt_depth=2, num_queries=8, hidden_dim=32, nheads=4, dim_feedforward=64,
                       dec_layers=2, conv_dim=32, mask_dim=32, embed_hidden_dim=32)
