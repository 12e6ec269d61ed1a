"""OVSeg: MaskFormer proposals classified by a CLIP adapted to masked regions, ensembled.

The MaskFormer branch (backbone -> FPN pixel decoder -> DETR predictor) proposes Q masks and
a CLIP-space embedding per mask, scored against the text embeddings at temperature 100. At
test time each proposal's thresholded mask also cuts a region out of the resized image;
the mask-prompted CLIP ViT classifies that crop, and the two class distributions are joined
by a geometric ensemble p^(1-w) * c^w. Semantic maps are the class-weighted sums of the
soft masks.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vocabseg.clip.text import TextEncoder, clip_text_encoder
from vocabseg.clip.vit import encode_masked_regions
from vocabseg.models.ovseg.config import OVSegConfig, OVSegSettings
from vocabseg.models.ovseg.pixel_decoder import FPNPixelDecoder
from vocabseg.models.ovseg.region_policy import RegionPlan, plan_regions
from vocabseg.models.ovseg.regions import extract_regions
from vocabseg.models.ovseg.transformer_predictor import TransformerPredictor
from vocabseg.models.protocol import InputBatch, QueryOutput, ResizeAndPad, Settings
from vocabseg.precision import fast_inference, fast_int8
from vocabseg.text.cache import build_text_classifier
from vocabseg.text.classifier import TextClassifier
from vocabseg.text.templates import DEFAULT_TEMPLATES
from vocabseg.text.vocabulary import VocabClass, Vocabulary

MASK_STRIDE = 4  # proposal masks are predicted at 1/4 of the input resolution
TEMPERATURE = 100.0  # OVSeg scores cosine similarities with a fixed temperature (not CLIP's logit_scale)


@dataclass
class OVSegOutput:
    """Raw MaskFormer-branch outputs of a padded batch (the criterion's input in training)."""

    pred_logits: torch.Tensor  # [B, Q, K + 1] proposal logits against the text embeddings, void last
    pred_masks: torch.Tensor  # [B, Q, H/4, W/4] mask logits
    aux_outputs: list[dict[str, torch.Tensor]]  # earlier decoder layers (deep supervision; none in fast inference)


class OVSeg(nn.Module):
    """MaskFormer with a CLIP-space class head, plus the mask-adapted CLIP that re-classifies regions."""

    def __init__(self, *, config: OVSegConfig, backbone: nn.Module, pixel_decoder: FPNPixelDecoder,
                 predictor: TransformerPredictor, clip: Any):  # clip: an open_clip CLIP (ViT)
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor
        self.clip: Any = clip  # open_clip CLIP (ViT) with visual.mask_embedding; attributes are untyped
        self.void_embedding = nn.Parameter(torch.empty(1, config.embed_dim))  # learned "no object" text embedding
        nn.init.normal_(self.void_embedding, std=clip.transformer.width ** -0.5)  # as the reference
        self._others_embedding: dict[str, torch.Tensor] = {}  # demo mode's "others" text embedding per text tower

    def void(self) -> torch.Tensor:
        """[1, D] unit-norm "no object" embedding, the classifier's last column."""
        return F.normalize(self.void_embedding, dim=-1)

    def forward(self, images: torch.Tensor, classifier: TextClassifier) -> OVSegOutput:
        """
        Args:
            images: [B, 3, H, W] normalised (ImageNet statistics), H and W multiples of 32.
            classifier: the vocabulary's text embeddings (K classes, one prompt string each).
        """
        features = self.backbone(images)
        mask_features = self.pixel_decoder(features)
        out = self.predictor(features["res5"], mask_features, last_only=fast_inference() and not self.training)
        logits = classifier.logits(out.class_embeds, void=self.void(), scale=TEMPERATURE)  # [L, B, Q, K + 1]
        aux = [{"pred_logits": logits[i], "pred_masks": out.mask_logits[i]} for i in range(len(logits) - 1)]
        return OVSegOutput(logits[-1], out.mask_logits[-1], aux)

    def input_policy(self, settings: Settings) -> ResizeAndPad:
        c = self.config
        return ResizeAndPad(settings.inference.min_size, settings.inference.max_size, c.pixel_mean, c.pixel_std,
                            c.size_divisibility)

    def text_encoder(self) -> TextEncoder:
        encoder = clip_text_encoder(self.clip, clip_model_name=self.config.clip_model_name,
                                    custom_clip=self.config.clip_config is not None)
        return encoder._replace(join_synonyms=True)  # OVSeg prompts each class with its whole name string

    def inference(self, batch: InputBatch, classifier: TextClassifier, settings: Settings) -> QueryOutput:
        """Proposals, CLIP region scores and their ensemble; ``settings.family`` is an ``OVSegSettings``.

        In demo mode (the official demo) a one-class vocabulary is scored against an extra
        "others" class, as the official demo does, and semantic scores come from each class's
        single best region with hard masks (``QueryOutput.semantic_scores``).
        """
        family: OVSegSettings = settings.family
        with_others = family.demo_mode and classifier.num_classes == 1
        if with_others:
            classifier = self._with_others(classifier)
        out = self(batch.images, classifier)
        proposal_probs = out.pred_logits.softmax(-1)  # [B, Q, K + 1], void last
        padded = F.interpolate(out.pred_masks, size=batch.images.shape[-2:], mode="bilinear", align_corners=False)
        per_image = self._classify_images(proposal_probs.unbind(), padded.unbind(), batch.resized, batch.image_sizes,
                                          classifier, family)
        class_probs = torch.stack([r.class_probs for r in per_image])  # [B, Q, K]
        valid = torch.stack([r.valid for r in per_image])  # [B, Q]
        details = {"proposal_logits": out.pred_logits, "clip_logits": torch.stack([r.clip_logits for r in per_image]),
                   "region_valid": valid, "region_sent": torch.stack([r.sent for r in per_image])}
        semantic = None
        if family.demo_mode:
            semantic = torch.stack([_demo_scores(class_probs[i], valid[i], padded[i], size, family.mask_threshold,
                                                 skip_last=with_others) for i, size in enumerate(batch.image_sizes)])
        if with_others:  # back to the user's one class: drop the "others" column everywhere
            keep = [0, -1]  # the class and void
            class_probs, proposal_probs = class_probs[..., :1], proposal_probs[..., keep]
            details = {**details, "proposal_logits": out.pred_logits[..., keep],
                       "clip_logits": details["clip_logits"][..., keep]}
            semantic = semantic[:, :1] if semantic is not None else None
        return QueryOutput(_merge_logprobs(class_probs, proposal_probs[..., -1:]), out.pred_masks, MASK_STRIDE,
                           details, class_probs=class_probs, semantic_scores=semantic)

    def _with_others(self, classifier: TextClassifier) -> TextClassifier:
        """The classifier with an "others" class appended (its embedding made once per text tower)."""
        encoder = self.text_encoder()
        cached = self._others_embedding.get(encoder.encoder_id)
        if cached is None:
            others = Vocabulary("others", (VocabClass(("others",)),))
            cached = build_text_classifier(others, encoder.encode, DEFAULT_TEMPLATES, progress=False).embeddings
            self._others_embedding[encoder.encoder_id] = cached
        rows = classifier.embeddings.shape[0]
        return replace(classifier, embeddings=torch.cat([classifier.embeddings, cached.to(classifier.embeddings)]),
                       synonym_index=torch.cat([classifier.synonym_index,
                                                torch.full_like(classifier.synonym_index[:1], rows)]),
                       seen=torch.cat([classifier.seen, classifier.seen.new_zeros(1)]),
                       class_names=(*classifier.class_names, "others"))

    def _classify_images(self, proposal_probs: Sequence[torch.Tensor], padded_masks: Sequence[torch.Tensor],
                         images: Sequence[torch.Tensor], sizes: Sequence[tuple[int, int]], classifier: TextClassifier,
                         settings: OVSegSettings) -> list[ClassifiedRegions]:
        """:meth:`_classify_image` for every image of a batch (arguments: one entry per image).

        Fast mode sends the crops of all the images through the CLIP together, in chunks of
        ``settings.region_batch`` that run full across image boundaries (fewer, fuller forward
        passes; the same numbers up to float rounding). Exact mode classifies image by image.
        """
        if not (fast_inference() and settings.clip_ensemble):
            return [self._classify_image(p, m, image, size, classifier, settings)
                    for p, m, image, size in zip(proposal_probs, padded_masks, images, sizes)]
        plans = [_plan_crops(p, m, image, size, settings)
                 for p, m, image, size in zip(proposal_probs, padded_masks, images, sizes)]
        logits = self.region_logits(torch.cat([p.crops for p in plans]), torch.cat([p.crop_masks for p in plans]),
                                    classifier, settings.region_batch)  # [sum n_i, K + 1]
        per_image = logits.split([len(p.crops) for p in plans])
        return [_fast_classes(p, lg, settings.ensemble_weight) for p, lg in zip(plans, per_image)]

    def _classify_image(self, proposal_probs: torch.Tensor, padded_masks: torch.Tensor, image: torch.Tensor,
                        size: tuple[int, int], classifier: TextClassifier,
                        settings: OVSegSettings) -> ClassifiedRegions:
        """One image: [Q, K] class probabilities, [Q, K + 1] CLIP logits (0 where no region), [Q] region
        flags, [Q] flags of the crops sent through the CLIP (fast mode: :mod:`.region_policy`; else the regions).

        Args:
            proposal_probs: [Q, K + 1] softmax of the proposal logits.
            padded_masks: [Q, H_pad, W_pad] mask logits at the padded input size.
            image: [3, h, w] the resized uint8 image the regions are cut from.
        """
        probs = proposal_probs[:, :-1]  # [Q, K]
        num_queries = probs.shape[0]
        clip_logits = probs.new_zeros(num_queries, probs.shape[1] + 1)
        valid = torch.zeros(num_queries, dtype=torch.bool, device=probs.device)
        if not settings.clip_ensemble:
            return ClassifiedRegions(probs, clip_logits, valid, valid)
        if fast_inference():
            plan = _plan_crops(proposal_probs, padded_masks, image, size, settings)
            logits = self.region_logits(plan.crops, plan.crop_masks, classifier, settings.region_batch)
            return _fast_classes(plan, logits, settings.ensemble_weight)
        masks = padded_masks[:, : size[0], : size[1]].sigmoid()  # [Q, h, w] on the unpadded image
        regions = extract_regions(image, masks, mask_thr=settings.mask_threshold)
        valid = regions.valid
        if valid.any():
            clip_logits[valid] = self.region_logits(regions.regions, regions.masks, classifier, settings.region_batch)
        clip_probs = clip_logits[:, :-1].softmax(-1)  # [Q, K], the void column dropped before the softmax
        return ClassifiedRegions(_ensemble(probs, clip_probs, valid, settings.ensemble_weight), clip_logits, valid,
                                 valid)

    def region_logits(self, regions: torch.Tensor, region_masks: torch.Tensor, classifier: TextClassifier,
                      chunk: int) -> torch.Tensor:
        """[N, K + 1] CLIP logits of N region crops [N, 3, 224, 224] with masks [N, 1, 224, 224]."""
        depth = self.config.mask_prompt_depth
        int8 = fast_int8()  # fast mode on x86: int8 linears in the CLIP blocks
        if len(regions) == 0:  # fast mode: no image of the batch sent a crop
            return regions.new_zeros(0, classifier.num_classes + 1)
        features = torch.cat([encode_masked_regions(self.clip.visual, regions[i:i + chunk],
                                                    region_masks[i:i + chunk], depth=depth, int8=int8)
                              for i in range(0, len(regions), max(chunk, 1))])  # [N, D]
        return classifier.logits(features[None], void=self.void(), scale=TEMPERATURE)[0]


class ClassifiedRegions(NamedTuple):
    """One image's region classification (see :meth:`OVSeg._classify_image`)."""

    class_probs: torch.Tensor  # [Q, K] ensembled class probabilities
    clip_logits: torch.Tensor  # [Q, K + 1] CLIP logits, 0 where no region
    valid: torch.Tensor  # [Q] bool: the query has a region
    sent: torch.Tensor  # [Q] bool: its crop went through the CLIP


class CropPlan(NamedTuple):
    """Fast mode, one image before the CLIP pass: the crops to send and what to do with their scores."""

    proposal_probs: torch.Tensor  # [Q, K + 1] proposal probabilities, void last
    valid: torch.Tensor  # [Q] bool: the query has a region
    plan: RegionPlan  # which queries send a crop, whose scores the others reuse
    crops: torch.Tensor  # [n, 3, S, S] the crops of the n sending queries, in query order
    crop_masks: torch.Tensor  # [n, 1, S, S]


def _plan_crops(proposal_probs: torch.Tensor, padded_masks: torch.Tensor, image: torch.Tensor,
                size: tuple[int, int], settings: OVSegSettings) -> CropPlan:
    """Fast mode: one image's regions, the region policy's plan, and the crops it sends (cut only for
    the queries that send one: with a small CLIP, cutting and resizing crops costs as much as their pass)."""
    masks = padded_masks[:, : size[0], : size[1]].sigmoid()  # [Q, h, w] on the unpadded image
    bin_masks = masks > settings.mask_threshold
    valid = bin_masks.flatten(1).any(dim=1)  # [Q], as extract_regions decides it
    plan = plan_regions(proposal_probs, bin_masks, valid)
    sent = extract_regions(image, masks[plan.sent], mask_thr=settings.mask_threshold)  # the same crops, bit for bit
    return CropPlan(proposal_probs, valid, plan, sent.regions, sent.masks)


def _fast_classes(crops: CropPlan, sent_logits: torch.Tensor, weight: float) -> ClassifiedRegions:
    """Fast mode, one image after the CLIP pass: ``sent_logits`` [n, K + 1] of its sent crops."""
    probs = crops.proposal_probs[:, :-1]  # [Q, K]
    plan, valid = crops.plan, crops.valid
    clip_logits = probs.new_zeros(probs.shape[0], probs.shape[1] + 1)
    clip_logits[plan.sent] = sent_logits.to(clip_logits.dtype)
    reused = plan.source >= 0
    clip_logits[reused] = clip_logits[plan.source[reused]]
    clip_probs = clip_logits[:, :-1].softmax(-1)
    # a proposal with no sent crop to reuse (void-dominated, overlapping none) keeps its own guess
    own = probs / probs.sum(-1, keepdim=True).clamp(min=1e-12)
    clip_probs = torch.where((valid & ~reused)[:, None], own, clip_probs)
    return ClassifiedRegions(_ensemble(probs, clip_probs, valid, weight), clip_logits, valid, plan.sent)


def _ensemble(proposal: torch.Tensor, clip: torch.Tensor, valid: torch.Tensor, weight: float) -> torch.Tensor:
    """OVSeg's geometric ensemble of [Q, K] class probabilities.

    w > 0: proposal^(1-w) * clip^w, where queries without a region keep clip = 1 (as the
    reference does). w = 0: the CLIP classifier alone (the official demo setting); queries
    without a region get zero scores, which drops them from the semantic sum.
    """
    if weight > 0:
        clip = torch.where(valid[:, None], clip, torch.ones_like(clip))
        return proposal ** (1 - weight) * clip ** weight
    return torch.where(valid[:, None], clip, torch.zeros_like(clip))


def _demo_scores(class_probs: torch.Tensor, valid: torch.Tensor, padded_masks: torch.Tensor, size: tuple[int, int],
                 mask_threshold: float, *, skip_last: bool) -> torch.Tensor:
    """The official demo's [K, H_pad, W_pad] scores: each class's best region, with hard masks.

    Every class picks the region (valid query) that scores it highest; each picked region adds
    its whole row of class scores over its thresholded mask. With an appended "others" class
    (``skip_last``) that class picks no region. Padding gets no score.
    """
    candidates = valid.nonzero().flatten()  # [N] queries with a region
    scores = padded_masks.new_zeros(class_probs.shape[1], *padded_masks.shape[-2:])
    if len(candidates) == 0:
        return scores
    probs = class_probs[candidates]  # [N, K]
    best = probs.argmax(0)  # [K] the region that scores each class highest
    if skip_last:
        best = best[:-1]
    selected = torch.zeros_like(probs)
    selected[best] = probs[best]
    hard = (padded_masks[candidates].sigmoid() > mask_threshold).to(probs.dtype)  # [N, H_pad, W_pad]
    scores = torch.einsum("nk,nhw->khw", selected, hard)
    scores[:, size[0]:, :] = 0
    scores[:, :, size[1]:] = 0
    return scores


def _merge_logprobs(class_probs: torch.Tensor, void_prob: torch.Tensor) -> torch.Tensor:
    """[B, Q, K + 1] log-probabilities for panoptic/instance merging (beyond the paper).

    The ensembled scores are renormalised over the K classes and scaled by the proposal's
    non-void probability, so void proposals can still be filtered, as FC-CLIP does.
    """
    total = class_probs.sum(-1, keepdim=True).clamp(min=1e-12)
    probs = torch.cat([class_probs / total * (1.0 - void_prob), void_prob], dim=-1)
    return torch.log(probs + 1e-8)
