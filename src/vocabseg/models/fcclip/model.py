"""FC-CLIP: one frozen convolutional CLIP for mask generation and open-vocabulary classification.

Backbone -> pixel decoder -> masked-attention decoder whose queries are classified against the
text embeddings (in-vocabulary); at test time the frozen CLIP also classifies each mask by
mask pooling (out-of-vocabulary), and a geometric ensemble joins the two.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vocabseg.clip.text import TextEncoder, clip_text_encoder
from vocabseg.clip.visual import CLIPBackbone
from vocabseg.models.fcclip.config import FCCLIPConfig
from vocabseg.models.fcclip.pixel_decoder import MSDeformAttnPixelDecoder
from vocabseg.models.fcclip.transformer_decoder import MaskedTransformerDecoder
from vocabseg.models.protocol import InputBatch, QueryOutput, ResizeAndPad, Settings
from vocabseg.text.classifier import TextClassifier

MASK_STRIDE = 4  # mask logits are predicted at 1/4 of the input resolution


@dataclass
class FCCLIPOutput:
    """Raw model outputs for a padded batch (the criterion's input in training)."""

    pred_logits: torch.Tensor  # [B, Q, K + 1] in-vocabulary logits, void last
    pred_masks: torch.Tensor  # [B, Q, H/4, W/4] mask logits
    aux_outputs: list[dict[str, torch.Tensor]]  # earlier decoder stages (deep supervision)
    clip_dense: torch.Tensor  # [B, C, H/32, W/32] dense CLIP features for the out-of-vocabulary head


class FCCLIP(nn.Module):
    """Backbone -> pixel decoder -> masked-attention decoder, classified against text embeddings."""

    def __init__(
        self,
        *,
        config: FCCLIPConfig,
        backbone: CLIPBackbone,
        pixel_decoder: MSDeformAttnPixelDecoder,
        transformer_decoder: MaskedTransformerDecoder,
    ):
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.pixel_decoder = pixel_decoder
        self.transformer_decoder = transformer_decoder
        self.void_embedding = nn.Embedding(1, backbone.embed_dim)  # learned "no object" text embedding

    def void(self) -> torch.Tensor:
        """[1, D] unit-norm "no object" embedding, the classifier's last column."""
        return F.normalize(self.void_embedding.weight, dim=-1)

    def forward(self, images: torch.Tensor, classifier: TextClassifier) -> FCCLIPOutput:
        """
        Args:
            images: [B, 3, H, W] normalised, H and W multiples of 32.
            classifier: the vocabulary's text embeddings (K classes).
        """
        features = self.backbone(images)
        mask_features, multi_scale = self.pixel_decoder(features.levels())
        decoded = self.transformer_decoder(multi_scale, mask_features, classifier, self.void())
        return FCCLIPOutput(decoded.pred_logits, decoded.pred_masks, decoded.aux_outputs, features.clip_dense)

    def input_policy(self, settings: Settings) -> ResizeAndPad:
        c = self.config
        return ResizeAndPad(settings.inference.min_size, settings.inference.max_size, c.pixel_mean, c.pixel_std,
                            c.size_divisibility)

    def text_encoder(self) -> TextEncoder:
        return clip_text_encoder(self.backbone.clip, clip_model_name=self.config.clip_model_name,
                                 custom_clip=self.config.clip_config is not None)

    def inference(self, batch: InputBatch, classifier: TextClassifier, settings: Settings) -> QueryOutput:
        """Both classifiers and their geometric ensemble; settings.family is an FCCLIPSettings."""
        out = self(batch.images, classifier)
        ensemble = settings.family
        # Classes are decided in float32 even in fast mode (no-op casts in exact mode).
        with torch.autocast(batch.images.device.type, enabled=False):
            pred_logits, pred_masks = out.pred_logits.float(), out.pred_masks.float()
            out_vocab, valid = self.out_of_vocab_logits(out.clip_dense.float(), pred_masks, classifier)
            mask_cls = geometric_ensemble(
                pred_logits, out_vocab, classifier.seen, alpha=ensemble.ensemble_alpha,
                beta=ensemble.ensemble_beta, valid_masks=valid if ensemble.ensemble_on_valid_mask else None,
            )
        details = {"in_vocab_logits": pred_logits, "out_vocab_logits": out_vocab}
        return QueryOutput(mask_cls, pred_masks, MASK_STRIDE, details)

    @torch.no_grad()
    def out_of_vocab_logits(
        self, clip_dense: torch.Tensor, mask_logits: torch.Tensor, classifier: TextClassifier
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Classifies each mask with the frozen CLIP alone.

        Args:
            clip_dense: [B, C, h, w] dense CLIP features.
            mask_logits: [B, Q, H/4, W/4] predicted masks.

        Returns:
            logits [B, Q, K + 1] (void last, meaningless) and valid [B, Q] (mask non-empty
            at the CLIP resolution).
        """
        masks = F.interpolate(mask_logits, size=clip_dense.shape[-2:], mode="bilinear", align_corners=False)
        pooled = self.backbone.pool_masks(clip_dense, masks)
        logits = classifier.logits(pooled, self.backbone.clip.logit_scale, void=self.void())  # CLIP's own temperature
        return logits, (masks > 0).flatten(2).any(-1)


def geometric_ensemble(
    in_vocab_logits: torch.Tensor,
    out_vocab_logits: torch.Tensor,
    seen_mask: torch.Tensor,
    *,
    alpha: float | torch.Tensor,
    beta: float | torch.Tensor,
    valid_masks: torch.Tensor | None = None,
) -> torch.Tensor:
    """Combines both classifiers into log-probabilities with a void column.

    For class c: p = p_in^(1-w) * p_out^w with w = alpha for classes seen in training,
    beta for the others; p_in and p_out are softmaxes over the K classes (void
    excluded). The result is rescaled by the in-vocabulary non-void probability so
    void predictions can still be filtered.

    Args:
        in_vocab_logits: [B, Q, K + 1] decoder logits, void last.
        out_vocab_logits: [B, Q, K + 1] CLIP mask-pooling logits, void last (ignored).
        seen_mask: [K] bool, classes that overlap the training vocabulary.
        valid_masks: [B, Q] bool; where False the CLIP score is not used (w = 0).
            None uses it everywhere.

    Returns:
        [B, Q, K + 1] log-probabilities (log(p + 1e-8)), void last.
    """
    p_in = in_vocab_logits[..., :-1].softmax(-1)
    p_out = out_vocab_logits[..., :-1].softmax(-1)
    if valid_masks is not None:
        valid = valid_masks.to(p_in.dtype).unsqueeze(-1)  # [B, Q, 1]
        alpha = torch.full_like(p_in, float(alpha)) * valid
        beta = torch.full_like(p_in, float(beta)) * valid
    log_seen = (p_in ** (1 - alpha) * p_out**alpha).log()
    log_unseen = (p_in ** (1 - beta) * p_out**beta).log()
    # Select rather than multiply by the 0/1 mask: identical for finite values, but a
    # probability that underflowed to 0 (log = -inf) on the unused side cannot turn into NaN.
    combined = torch.where(seen_mask.to(p_in.device).bool(), log_seen, log_unseen).softmax(-1)
    void_prob = in_vocab_logits.softmax(-1)[..., -1:]
    probs = torch.cat([combined * (1.0 - void_prob), void_prob], dim=-1)
    return torch.log(probs + 1e-8)
