"""FC-CLIP: one frozen convolutional CLIP for mask generation and open-vocabulary classification."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import CLIPBackbone
from .heads import classify_embeddings
from .pixel_decoder import MSDeformAttnPixelDecoder
from .transformer_decoder import MaskedTransformerDecoder


@dataclass
class FCCLIPOutput:
    """Raw model outputs for a padded batch."""

    pred_logits: torch.Tensor  # [B, Q, K + 1] in-vocabulary logits, void last
    pred_masks: torch.Tensor  # [B, Q, H/4, W/4] mask logits
    aux_outputs: list[dict[str, torch.Tensor]]  # earlier decoder stages (deep supervision)
    clip_dense: torch.Tensor  # [B, C, H/32, W/32] dense CLIP features for the out-of-vocabulary head


class FCCLIP(nn.Module):
    """Backbone -> pixel decoder -> masked-attention decoder, classified against text embeddings."""

    def __init__(
        self,
        *,
        backbone: CLIPBackbone,
        pixel_decoder: MSDeformAttnPixelDecoder,
        transformer_decoder: MaskedTransformerDecoder,
    ):
        super().__init__()
        self.backbone = backbone
        self.pixel_decoder = pixel_decoder
        self.transformer_decoder = transformer_decoder
        self.void_embedding = nn.Embedding(1, backbone.embed_dim)  # learned "no object" text embedding

    def classifier_with_void(self, text_classifier: torch.Tensor) -> torch.Tensor:
        """[T, D] unit-norm synonym embeddings -> [T + 1, D] with the void embedding appended."""
        void = F.normalize(self.void_embedding.weight, dim=-1)
        return torch.cat([text_classifier.to(void), void], dim=0)

    def forward(self, images: torch.Tensor, text_classifier: torch.Tensor, synonym_counts: list[int]) -> FCCLIPOutput:
        """
        Args:
            images: [B, 3, H, W] normalised, H and W multiples of 32.
            text_classifier: [T, D] unit-norm text embeddings, one row per synonym.
            synonym_counts: synonyms per class, summing to T.
        """
        features = self.backbone(images)
        mask_features, multi_scale = self.pixel_decoder(features.levels())
        classifier = self.classifier_with_void(text_classifier)
        decoded = self.transformer_decoder(multi_scale, mask_features, classifier, synonym_counts)
        return FCCLIPOutput(decoded.pred_logits, decoded.pred_masks, decoded.aux_outputs, features.clip_dense)

    @torch.no_grad()
    def out_of_vocab_logits(
        self, clip_dense: torch.Tensor, mask_logits: torch.Tensor, text_classifier: torch.Tensor, synonym_counts: list[int]
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
        classifier = self.classifier_with_void(text_classifier)
        logits = classify_embeddings(pooled, classifier, self.backbone.clip.logit_scale, synonym_counts)
        return logits, (masks > 0).flatten(2).any(-1)
