"""Stage (b): (masked crop, noun) pairs from images, their captions and a proposal generator.

Per image (OVSeg section 3.2): the nouns of its captions are the candidate classes; the
segmenter's proposals are cut out as masked crops (the crops the segmenter's CLIP branch
sees); each noun is paired with the crop whose CLIP embedding is closest to the noun's
prompt-averaged text embedding. Images that give nothing are recorded in ``skipped.jsonl``
with the reason (no noun, no proposal, nothing above ``min_score``, unreadable or missing file).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from vocabseg import distributed as dist
from vocabseg.errors import ImageError
from vocabseg.images import load_image
from vocabseg.train.ovseg.mining.captions import read_captions
from vocabseg.train.ovseg.mining.nouns import extract_nouns
from vocabseg.train.ovseg.mining.pairs import PairWriter

logger = logging.getLogger(__name__)

MinedPair = tuple[np.ndarray, np.ndarray, str, float, str]  # crop [S, S, 3] uint8, mask [S, S], noun, score, caption


class Proposals(NamedTuple):
    regions: torch.Tensor  # [R, 3, S, S] CLIP-normalised masked crops
    masks: torch.Tensor  # [R, 1, S, S] their masks in {0, 1}


class RegionMatcher(Protocol):
    """What mining needs from a segmenter and its CLIP."""

    def proposals(self, image: np.ndarray, nouns: list[str]) -> Proposals:
        """Masked crops of the image's proposals (``nouns`` may score their objectness)."""
        ...

    def embed_regions(self, proposals: Proposals) -> torch.Tensor:
        """[R, D] unit-norm CLIP embeddings of the crops."""
        ...

    def embed_nouns(self, nouns: list[str]) -> torch.Tensor:
        """[K, D] unit-norm text embeddings of the nouns."""
        ...


@dataclass(frozen=True)
class MiningSettings:
    mask_threshold: float = 0.4
    min_objectness: float = 0.0
    min_score: float = 0.0
    captions_per_image: int = 1


class MiningSummary(NamedTuple):
    mined: int  # images that gave pairs in this run
    skipped: int  # images recorded as skipped in this run
    pairs: int  # pairs written in this run
    already_done: int  # images found done from an earlier run


def caption_nouns(captions: list[str]) -> list[tuple[str, str]]:
    """(noun, the first caption naming it) over the captions, each noun once."""
    seen: dict[str, str] = {}
    for caption in captions:
        for noun in extract_nouns(caption):
            seen.setdefault(noun, caption)
    return list(seen.items())


def mine_image(image: np.ndarray, captions: list[str], matcher: RegionMatcher,
               settings: MiningSettings) -> tuple[list[MinedPair], str | None]:
    """The image's pairs, or no pair and the reason to record."""
    nouns = caption_nouns(captions)
    if not nouns:
        return [], "no nouns in its captions"
    proposals = matcher.proposals(image, [n for n, _ in nouns])
    if len(proposals.regions) == 0:
        return [], "no proposal"
    similarity = matcher.embed_nouns([n for n, _ in nouns]) @ matcher.embed_regions(proposals).T  # [K, R]
    scores, best = similarity.max(dim=1)  # [K]: each noun's closest region
    pairs = [(_to_uint8(proposals.regions[r]), proposals.masks[r, 0].cpu().numpy() > 0.5, noun, float(score), caption)
             for (noun, caption), score, r in zip(nouns, scores.tolist(), best.tolist())
             if score >= settings.min_score]
    return pairs, None if pairs else f"no noun-region similarity reaches mine.min_score={settings.min_score}"


def _to_uint8(region: torch.Tensor) -> np.ndarray:
    """[3, S, S] CLIP-normalised -> [S, S, 3] uint8."""
    mean = torch.tensor(OPENAI_DATASET_MEAN, device=region.device).view(3, 1, 1) * 255
    std = torch.tensor(OPENAI_DATASET_STD, device=region.device).view(3, 1, 1) * 255
    return (region * std + mean).round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()


def mine(images: str | Path, captions: dict[str, list[str]], writer: PairWriter, matcher: RegionMatcher,
         settings: MiningSettings, *, missing: Sequence[str] = (), rank: int = 0, world_size: int = 1) -> MiningSummary:
    """Mines this rank's share (every ``world_size``-th image) of the captioned images not done yet."""
    folder, done_before = Path(images), len(writer.done)
    mined = skipped = pairs_written = 0
    for name in missing[rank::world_size]:
        if name not in writer.done:
            writer.skip(name, "image file missing from mine.images")
            skipped += 1
    names = sorted(captions)[rank::world_size]
    for index, name in enumerate(names):
        if name in writer.done:
            continue
        try:
            image = load_image(folder / name)
        except (ImageError, OSError) as error:
            writer.skip(name, f"unreadable image ({error})")
            skipped += 1
            continue
        with torch.no_grad():
            pairs, reason = mine_image(image, captions[name], matcher, settings)
        if reason is not None:
            writer.skip(name, reason)
            skipped += 1
        else:
            pairs_written += writer.add(name, pairs)
            mined += 1
        if (index + 1) % 100 == 0:
            logger.info("mined %d/%d images of rank %d (%d pairs)", index + 1, len(names), rank, pairs_written)
    return MiningSummary(mined, skipped, pairs_written, done_before)


class SegmenterMatcher:
    """An OVSeg segmenter's proposals, matched by its own (unprompted) CLIP."""

    def __init__(self, model: Any, settings: Any, *, mask_threshold: float, min_objectness: float, chunk: int,
                 device: torch.device):
        self.model, self.device = model.to(device).eval(), device
        self.policy = model.input_policy(settings)
        self.encoder = model.text_encoder()
        self.mask_threshold, self.min_objectness, self.chunk = mask_threshold, min_objectness, chunk

    def _classifier(self, nouns: list[str]):
        from vocabseg.text import TextClassifier
        from vocabseg.text.cache import build_text_classifier
        from vocabseg.text.templates import DEFAULT_TEMPLATES  # OVSeg's 14 ViLD templates
        from vocabseg.text.vocabulary import VocabClass, Vocabulary

        vocabulary = Vocabulary("caption nouns", tuple(VocabClass((n,)) for n in nouns))
        text = build_text_classifier(vocabulary, self.encoder.encode, DEFAULT_TEMPLATES, progress=False)
        return TextClassifier.build(text, vocabulary, device=self.device)

    def proposals(self, image: np.ndarray, nouns: list[str]) -> Proposals:
        from vocabseg.models.ovseg.regions import extract_regions
        from vocabseg.preprocess import normalize_and_pad, resize_image

        p = self.policy
        resized = torch.from_numpy(resize_image(image, p.min_size, p.max_size).copy()).permute(2, 0, 1).to(self.device)
        batch, sizes = normalize_and_pad([resized], p.pixel_mean, p.pixel_std, p.size_divisibility)
        out = self.model(batch, self._classifier(nouns))
        keep = 1 - out.pred_logits[0].softmax(-1)[:, -1] >= self.min_objectness  # [Q]
        masks = F.interpolate(out.pred_masks, size=batch.shape[-2:], mode="bilinear", align_corners=False)[0]
        masks = masks[keep, : sizes[0][0], : sizes[0][1]].sigmoid()  # [Q', h, w]
        regions = extract_regions(resized, masks, mask_thr=self.mask_threshold)
        return Proposals(regions.regions, regions.masks)

    def embed_regions(self, proposals: Proposals) -> torch.Tensor:
        from vocabseg.clip.vit import encode_masked_regions

        visual = self.model.clip.visual
        features = torch.cat([encode_masked_regions(visual, proposals.regions[i:i + self.chunk], None, depth=0)
                              for i in range(0, len(proposals.regions), self.chunk)])
        return F.normalize(features.float(), dim=-1)

    def embed_nouns(self, nouns: list[str]) -> torch.Tensor:
        return F.normalize(self._classifier(nouns).embeddings.float(), dim=-1)  # one row per noun


class MiningInputs(NamedTuple):
    captions: dict[str, list[str]]  # image name -> its captions (those to mine)
    missing: list[str]  # captioned images absent from mine.images


def read_mining_inputs(config) -> MiningInputs:
    """The ``mine`` stage's captions and images, checked before anything is written.

    Raises:
        ConfigError: the mining extra is missing. DatasetError: captions or images that do not fit.
    """
    from vocabseg.train.ovseg.mining.nouns import _tagger

    m = config.mine
    _tagger()  # fail fast without the mining extra
    captions, missing = read_captions(m.captions, m.images, per_image=m.captions_per_image)
    if m.limit is not None:
        captions = {k: captions[k] for k in sorted(captions)[: m.limit]}
    return MiningInputs(captions, missing)


def mining_record(config) -> dict[str, Any]:
    """What ``mining.json`` records of a StageConfig: the settings and sources that make the pairs what they are,
    and (MINING_RESUME) what a resume may change."""
    m = config.mine
    settings = MiningSettings(m.mask_threshold, m.min_objectness, m.min_score, m.captions_per_image)
    return {**asdict(settings), "segmenter": str(m.segmenter), "captions": str(m.captions), "images": str(m.images),
            "clip_weights": m.clip_weights, "limit": m.limit, "chunk": m.chunk, "device": config.device}


def mine_in_folder(config, inputs: MiningInputs, device: torch.device, *, resumed: bool,
                   overwrite: bool) -> MiningSummary:
    """Runs the ``mine`` stage into its (locked, checked) pair folder ``config.output``.

    Args:
        resumed: the folder holds a pair folder continued with --resume (its done images are kept;
            rank 0 records the resume in resumes.jsonl).
        overwrite: delete the old pair folder first (rank 0, before any rank writes).
    """
    from vocabseg.checkpoints import load_model
    from vocabseg.errors import ConfigError
    from vocabseg.run_folder import clear, record_resume

    m = config.mine
    loaded = load_model(m.segmenter, clip_weights=m.clip_weights)
    if loaded.family.name != "ovseg":
        raise ConfigError(f"mine.segmenter={m.segmenter} is {loaded.family.title}; mining needs an OVSeg segmenter")
    if overwrite:
        dist.on_main_first(lambda: clear(Path(config.output), "mine"))
    settings = MiningSettings(m.mask_threshold, m.min_objectness, m.min_score, m.captions_per_image)
    writer = PairWriter(config.output, settings=mining_record(config), shard=dist.get_rank())
    dist.barrier()  # every rank has read the done lists before any rank adds to them
    if resumed and dist.is_main_process():
        record_resume(Path(config.output), writer.changes, images_done=len(writer.done))
    matcher = SegmenterMatcher(loaded.model, loaded.settings, mask_threshold=m.mask_threshold,
                               min_objectness=m.min_objectness, chunk=m.chunk, device=device)
    summary = mine(m.images, inputs.captions, writer, matcher, settings, missing=inputs.missing,
                   rank=dist.get_rank(), world_size=dist.get_world_size())
    dist.barrier()
    if dist.is_main_process():
        logger.info("mining: %d images gave %d pairs, %d skipped, %d were done before (%s)", summary.mined,
                    summary.pairs, summary.skipped, summary.already_done, config.output)
    return summary
