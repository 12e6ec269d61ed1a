"""The official FC-CLIP variants: architecture, test-time settings and released weights.

Each variant is a small function in a plain dict, so "go to definition" lands on
its hyperparameters. Figures under ``reported`` are the official README's
(ADE20K PQ/mAP/mIoU, Cityscapes PQ/mAP/mIoU, Mapillary PQ/mIoU, A-847, PC-59,
PC-459, PAS-21, PAS-20 mIoU, COCO PQ/mAP/mIoU).
"""
from __future__ import annotations

from collections.abc import Callable

from vocabseg.models.fcclip.config import FCCLIPConfig, FCCLIPSettings
from vocabseg.models.protocol import InferenceConfig, ModelVariant, Settings, WeightsSpec

REPORTED_COLUMNS = (
    "ade20k_pq", "ade20k_map", "ade20k_miou", "cityscapes_pq", "cityscapes_map", "cityscapes_miou",
    "mapillary_pq", "mapillary_miou", "a847_miou", "pc59_miou", "pc459_miou", "pas21_miou", "pas20_miou",
    "coco_pq", "coco_map", "coco_miou",
)


def _variant(name: str, config: FCCLIPConfig, settings: FCCLIPSettings, weights: WeightsSpec, description: str,
             reported: dict[str, float]) -> ModelVariant:
    return ModelVariant(name=name, family="fcclip", config=config, settings=Settings(InferenceConfig(), settings),
                        weights=weights, description=description, reported=reported)


def _gdrive(file_id: str) -> str:
    # The usercontent endpoint with confirm=t skips the "cannot scan for viruses" page that
    # Google Drive shows instead of files this large.
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


def _reported(*values: float) -> dict:
    return dict(zip(REPORTED_COLUMNS, values))


def _resnet(name: str, clip: str, embed_dim: int, gdrive_id: str, reported: dict) -> ModelVariant:
    return _variant(
        name,
        FCCLIPConfig(clip_model_name=clip, clip_pretrained="openai", quick_gelu=True, embed_dim=embed_dim),
        # ResNet CLIPs score empty masks badly: the official configs ensemble only on valid masks.
        FCCLIPSettings(ensemble_on_valid_mask=True),
        WeightsSpec(f"{name}.pth", _gdrive(gdrive_id)),
        f"FC-CLIP with frozen OpenAI CLIP {clip}, trained on COCO panoptic",
        reported,
    )


def fcclip_convnext_large_coco() -> ModelVariant:
    return _variant(
        "fcclip_convnext_large_coco",
        FCCLIPConfig(clip_model_name="convnext_large_d_320", clip_pretrained="laion2b_s29b_b131k_ft_soup",
                     embed_dim=768),
        FCCLIPSettings(),
        WeightsSpec("fcclip_convnext_large_coco.pth", _gdrive("1-91PIns86vyNaL3CzMmDD39zKGnPMtvj")),
        "FC-CLIP with frozen LAION ConvNeXt-Large CLIP (the paper's main model), trained on COCO panoptic",
        _reported(26.8, 16.8, 34.1, 44.0, 26.8, 56.2, 18.3, 27.8, 14.8, 58.4, 18.2, 81.8, 95.4, 54.4, 44.6, 63.7),
    )


def fcclip_rn50_coco() -> ModelVariant:
    return _resnet("fcclip_rn50_coco", "RN50", 1024, "1tcB-8FNON-LwckXQbUyKcBA2G7TU65Zh",
                   _reported(17.9, 9.5, 23.3, 40.3, 21.6, 53.2, 15.9, 24.4,
                             7.1, 50.5, 12.9, 75.9, 89.5, 50.7, 40.7, 58.8))


def fcclip_rn101_coco() -> ModelVariant:
    return _resnet("fcclip_rn101_coco", "RN101", 512, "1P0mdgftReWzVbPQ0O0CSBfW3krHhTOj0",
                   _reported(19.1, 10.2, 24.0, 40.9, 24.1, 53.9, 16.7, 23.2,
                             7.7, 48.9, 12.3, 77.6, 91.3, 51.4, 41.6, 58.9))


def fcclip_rn50x4_coco() -> ModelVariant:
    return _resnet("fcclip_rn50x4_coco", "RN50x4", 640, "1nUpUsNUE22eOV9skxv9IyIkmCbg5jrIF",
                   _reported(21.8, 11.7, 26.8, 42.2, 23.8, 54.6, 17.4, 24.6,
                             8.7, 54.0, 13.1, 79.0, 92.9, 52.1, 42.8, 60.4))


def fcclip_rn50x16_coco() -> ModelVariant:
    return _resnet("fcclip_rn50x16_coco", "RN50x16", 768, "1rJu2UwwtI0VLDl9CyB8Mkgw9qHlnX70W",
                   _reported(22.5, 13.6, 29.4, 42.0, 25.6, 56.0, 17.8, 26.1,
                             10.3, 56.4, 15.7, 80.7, 94.5, 54.4, 45.0, 63.3))


def fcclip_rn50x64_coco() -> ModelVariant:
    return _resnet("fcclip_rn50x64_coco", "RN50x64", 1024, "1rvfFVp5p3PZQsHp2NGVEBeYYcqgVVaZX",
                   _reported(22.8, 13.6, 28.4, 42.7, 27.4, 55.1, 18.2, 27.3,
                             10.8, 55.7, 16.2, 80.3, 95.1, 55.6, 46.4, 65.3))


VARIANTS: dict[str, Callable[[], ModelVariant]] = {
    "fcclip_convnext_large_coco": fcclip_convnext_large_coco,
    "fcclip_rn50_coco": fcclip_rn50_coco,
    "fcclip_rn101_coco": fcclip_rn101_coco,
    "fcclip_rn50x4_coco": fcclip_rn50x4_coco,
    "fcclip_rn50x16_coco": fcclip_rn50x16_coco,
    "fcclip_rn50x64_coco": fcclip_rn50x64_coco,
}



# A few-million-parameter FC-CLIP with the full architecture, for tests and smoke runs
# (random weights only; nothing is downloaded).
_TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
_TINY_VISION = {
    "convnext": {"timm_model_name": "convnext_atto", "timm_model_pretrained": False, "timm_pool": "",
                 "timm_proj": "mlp", "image_size": 64},
    "resnet": {"layers": [1, 1, 1, 1], "width": 8, "image_size": 64, "patch_size": None},
}


def tiny_config(kind: str = "convnext") -> FCCLIPConfig:
    """A tiny FC-CLIP on a ConvNeXt-atto (``"convnext"``) or one-block ModifiedResNet (``"resnet"``) CLIP."""
    clip = {"embed_dim": 32, "vision_cfg": _TINY_VISION[kind], "text_cfg": _TINY_TEXT}
    return FCCLIPConfig(clip_model_name=f"tiny_{kind}", clip_pretrained="none", clip_config=clip, embed_dim=32,
                        num_queries=10, hidden_dim=32, nheads=4, dim_feedforward=64, dec_layers=3, mask_dim=32,
                        conv_dim=32, enc_layers=1, enc_ffn_dim=64, enc_heads=4)
