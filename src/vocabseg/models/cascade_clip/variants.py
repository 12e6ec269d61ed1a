"""The released Cascade-CLIP models: architecture, test-time settings and official weights.

The six models of the official README (CLIP ViT-B/16, 512 x 512 crops): VOC-20, Pascal Context-59
and COCO-Stuff-171, each inductive (trained on the seen classes only) and transductive
(self-trained with pseudo-labels on unseen pixels). They differ in their number of visual prompt
tokens and in the inductive models' seen-class offset. ``reported`` holds the README's mIoU of
the seen and unseen classes and the paper's harmonic mean.

The weights are hosted only on Baidu Netdisk (a share page with an access code, no direct link):
``url`` records the share, the access code is in the description, and the missing-file message
tells where to save the file.
"""
from __future__ import annotations

from collections.abc import Callable

from vocabseg.models.cascade_clip.config import CascadeCLIPConfig, CascadeCLIPSettings
from vocabseg.models.protocol import InferenceConfig, ModelVariant, Settings, WeightsSpec
from vocabseg.text.templates import CASCADE_CLIP_SINGLE_TEMPLATE, CASCADE_CLIP_TEMPLATES

# dataset key -> (prompt tokens, prompt templates, full vocabulary, seen-only vocabulary, README name).
# Templates: those of the official text embeddings each config loads (get_embedding.ipynb): VOC-20
# voc12_single.npy (one template), Context-59 and COCO-Stuff *_multi.npy (the 15).
_DATASETS = {
    "voc20": (10, CASCADE_CLIP_SINGLE_TEMPLATE, "cascade_voc_20", "cascade_voc_20_seen",
              "PASCAL VOC 2012 (20 classes, 5 unseen)"),
    "context59": (35, CASCADE_CLIP_TEMPLATES, "cascade_context_59", "cascade_context_59_seen",
                  "Pascal Context (59 classes, 10 unseen)"),
    "coco171": (50, CASCADE_CLIP_TEMPLATES, "cascade_coco_stuff_171", "cascade_coco_stuff_171_seen",
                "COCO-Stuff 164K (171 classes, 15 unseen)"),
}
# (dataset, setting) -> (Baidu share, access code, mIoU seen, mIoU unseen), official README
_RELEASES = {
    ("voc20", "inductive"): ("https://pan.baidu.com/s/1HZyN-Q0PFLJyaofOJ6ePqw", "ji3u", 92.5, 83.0),
    ("voc20", "transductive"): ("https://pan.baidu.com/s/1igggSXPOF0PXEGmxsH7NQw", "45qa", 93.6, 93.2),
    ("context59", "inductive"): ("https://pan.baidu.com/s/1RjiAy3tLqvkAAOxwrj_LZw", "5gvr", 55.9, 47.2),
    ("context59", "transductive"): ("https://pan.baidu.com/s/19HA5BQ0zMGttTTAEG0yjew", "r9ks", 56.4, 55.0),
    ("coco171", "inductive"): ("https://pan.baidu.com/s/1OwBKOKr0-GkTmmv_K6OLqw", "9mkw", 41.2, 43.4),
    ("coco171", "transductive"): ("https://pan.baidu.com/s/1vRYOU1o5ejCr3chBphlYxQ", "rbbv", 41.7, 62.5),
}


def _variant(dataset: str, setting: str) -> ModelVariant:
    tokens, templates, vocabulary, seen_vocabulary, title = _DATASETS[dataset]
    share, code, seen, unseen = _RELEASES[(dataset, setting)]
    name = f"cascade_clip_vitb16_{dataset}_{setting}"
    return ModelVariant(
        name=name, family="cascade_clip",
        config=CascadeCLIPConfig(prompt_tokens=tokens, prompt_templates=templates),
        settings=Settings(InferenceConfig(min_size=512, max_size=1_000_000),
                          CascadeCLIPSettings(seen_offset=0.1 if setting == "inductive" else 0.0)),
        weights=WeightsSpec(f"{name}.pth", f"{share}?pwd={code}", includes_clip=True,
                            manual=f"a Baidu Netdisk share, access code {code}"),
        train_vocabulary=seen_vocabulary,
        description=f"Cascade-CLIP ViT-B/16 {setting} on {title}; vocabulary {vocabulary}; Baidu Netdisk "
                    f"access code {code}",
        reported={f"{dataset}_miou_seen": seen, f"{dataset}_miou_unseen": unseen,
                  f"{dataset}_hiou": round(2 * seen * unseen / (seen + unseen), 1)},
    )


def _factory(dataset: str, setting: str) -> Callable[[], ModelVariant]:
    return lambda: _variant(dataset, setting)


VARIANTS: dict[str, Callable[[], ModelVariant]] = {
    f"cascade_clip_vitb16_{dataset}_{setting}": _factory(dataset, setting)
    for dataset in _DATASETS for setting in ("inductive", "transductive")
}

# A tiny OpenAI-style ViT CLIP for tests and smoke runs (random weights; nothing is downloaded).
_TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 32, "layers": 4, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def tiny_config() -> CascadeCLIPConfig:
    """A tiny Cascade-CLIP: 4-block ViT at 64 x 64 windows, levels from blocks 0-1 and 2, 2-layer decoders."""
    return CascadeCLIPConfig(clip_model_name="tiny_vit", clip_pretrained="none", clip_config=_TINY_CLIP,
                             image_size=64, embed_dim=32, prompt_tokens=3, level_blocks=(1, 2),
                             stage_levels=((0,), (1,)), decoder_layers=2, decoder_heads=4, decoder_ffn=64)
