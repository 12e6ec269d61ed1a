"""OVSeg against the official implementation's outputs on synthetic official-format checkpoints.

The goldens (``tests/goldens/ovseg_*_voc20_synthetic.npz``) were made once with the official
ov-seg code (detectron2 v0.6, CPU) on the state dicts that ``../shared/reference/synth_weights.py``
makes from the OVSeg manifests, scikit-image's astronaut photo, the VOC-20 class strings and
ensemble weight 0.45. End to end (all 100 regions) vocabseg matched them on R101c + ViT-B/16 with
100% argmax agreement; here every stage is checked, the CLIP branch on the first regions only
(a real-size ViT on 100 crops takes minutes on two cores).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vocabseg.checkpoints import load_weights, parse_checkpoint
from vocabseg.clip.vit import encode_masked_regions
from vocabseg.models import InputBatch
from vocabseg.models.ovseg.model import _ensemble
from vocabseg.models.ovseg.regions import extract_regions
from vocabseg.postprocess import semantic_inference
from vocabseg.predictor import Predictor
from vocabseg.preprocess import crop_and_resize, normalize_and_pad, resize_image
from vocabseg.text import TextEmbeddingCache
from vocabseg.zoo import get_variant

GOLDENS = Path(__file__).parents[2] / "goldens"
ARCHS = [  # (manifest suffix, variant name without "_coco")
    pytest.param(("R101c_vitB16", "ovseg_r101c_vitb16"), id="R101c_vitB16"),
    pytest.param(("swinB_vitL14", "ovseg_swinb_vitl14"), id="swinB_vitL14", marks=pytest.mark.slow),
]


def _relative_error(ours: torch.Tensor, reference: np.ndarray) -> float:
    expected = torch.from_numpy(np.asarray(reference)).float()
    return float((ours.detach().float() - expected).abs().max() / expected.abs().max())


@pytest.fixture(scope="module", params=ARCHS)
def official(request, reference_dir, tmp_path_factory):
    """(predictor on the synthetic official checkpoint, golden arrays) for one architecture."""
    arch, name = request.param
    sys.path.insert(0, str(reference_dir))
    from synth_weights import load_manifest, synth_state_dict

    state = synth_state_dict(load_manifest(reference_dir / "ovseg" / f"manifest_{arch}.json"))
    state.update(torch.load(reference_dir / "ovseg" / f"constant_buffers_{arch}.pt", weights_only=True))
    ckpt = parse_checkpoint({"model": state}, source="synthetic", variant=get_variant(f"{name}_coco"))
    model = ckpt.family.build(ckpt.config)
    load_weights(model, ckpt)
    golden = np.load(GOLDENS / f"{name}_voc20_synthetic.npz")
    settings = get_variant(f"{name}_coco").settings.override({"ensemble_weight": float(golden["ensemble_weight"])})
    predictor = Predictor(model, model.config, settings, family="ovseg",
                          text_cache=TextEmbeddingCache(tmp_path_factory.mktemp("text")))
    predictor.set_vocabulary("ovseg_pascal_voc_20", progress=False)
    return predictor, golden


@pytest.fixture(scope="module")
def head(official):
    """The MaskFormer branch's outputs and the network input."""
    predictor, golden = official
    policy = predictor.model.input_policy(predictor.settings)
    resized = resize_image(golden["image"], policy.min_size, policy.max_size)
    tensor = torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))
    images, sizes = normalize_and_pad([tensor], policy.pixel_mean, policy.pixel_std, policy.size_divisibility)
    with torch.inference_mode():
        out = predictor.model(images, predictor.classifier)
    return InputBatch(images, sizes, [tensor]), out


def test_text_embeddings_match(official):
    predictor, golden = official
    ours = torch.cat([predictor.classifier.embeddings, predictor.model.void()])  # [K + 1, D], void last
    assert _relative_error(ours, golden["text_features"]) < 1e-5


def test_proposal_logits_and_masks_match(official, head):
    _, golden = official
    _, out = head
    assert _relative_error(out.pred_logits[0], golden["pred_logits"]) < 1e-4
    assert _relative_error(out.pred_masks[0, :, ::4, ::4], golden["pred_masks_every4"]) < 1e-4


def test_first_regions_through_the_mask_prompted_clip_match(official, head):
    predictor, golden = official
    batch, out = head
    size = batch.image_sizes[0]
    masks = torch.nn.functional.interpolate(out.pred_masks, size=batch.images.shape[-2:], mode="bilinear",
                                            align_corners=False)[0, :, : size[0], : size[1]].sigmoid()
    regions = extract_regions(batch.resized[0], masks, mask_thr=predictor.settings.family.mask_threshold)
    assert regions.valid.tolist() == golden["valid_flag"].tolist()
    count = len(golden["clip_image_features"])
    with torch.inference_mode():
        features = encode_masked_regions(predictor.model.clip.visual, regions.regions[:count],
                                         regions.masks[:count], depth=predictor.model.config.mask_prompt_depth)
    features = features / features.norm(dim=-1, keepdim=True)
    assert _relative_error(features, golden["clip_image_features"]) < 1e-4


def test_ensemble_and_semantic_scores_match_given_the_official_clip_logits(official, head):
    predictor, golden = official
    batch, out = head
    proposal = out.pred_logits[0].softmax(-1)[:, :-1]
    clip_probs = torch.from_numpy(golden["clip_logits"])[:, :-1].softmax(-1)
    valid = torch.from_numpy(golden["valid_flag"])
    class_probs = _ensemble(proposal, clip_probs, valid, float(golden["ensemble_weight"]))
    assert _relative_error(class_probs, golden["mask_cls_ensembled"]) < 1e-4
    padded = torch.nn.functional.interpolate(out.pred_masks, size=batch.images.shape[-2:], mode="bilinear",
                                             align_corners=False)[0]
    scores = semantic_inference(torch.empty(0), padded, class_probs=class_probs)
    scores = crop_and_resize(scores, batch.image_sizes[0], golden["image"].shape[:2])  # [K, H, W] at image size
    assert _relative_error(scores[:, ::16, ::16], golden["sem_seg_every16"]) < 1e-3
    assert (scores.argmax(0).numpy() == golden["argmax"]).mean() >= 0.999
