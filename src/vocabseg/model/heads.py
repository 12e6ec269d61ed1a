"""Open-vocabulary classification pieces shared by the decoder and the ensemble."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """Linear layers with ReLU between them (none after the last)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def mask_pool(features: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Averages features inside each predicted mask (logit > 0).

    Args:
        features: [B, C, H, W]
        mask_logits: [B, Q, h, w]; resized bilinearly to (H, W) when needed.

    Returns:
        [B, Q, C]; an empty mask pools to zeros.
    """
    if mask_logits.shape[-2:] != features.shape[-2:]:
        mask_logits = F.interpolate(mask_logits, size=features.shape[-2:], mode="bilinear", align_corners=False)
    with torch.no_grad():  # binary masks: no gradient flows into the mask branch from pooling
        masks = (mask_logits.detach() > 0).to(features.dtype)
        denominator = masks.sum(dim=(-1, -2), keepdim=True) + 1e-8
    return torch.einsum("bchw,bqhw->bqc", features, masks / denominator)


def synonym_index(synonym_counts: list[int], device: torch.device | None = None) -> torch.Tensor:
    """Column indices [K, S_max] gathering each class's synonyms from the flat classifier.

    Short rows are padded with the class's first synonym: a repeat does not change a max.
    """
    width = max(synonym_counts)
    rows, start = [], 0
    for count in synonym_counts:
        row = list(range(start, start + count))
        rows.append(row + [start] * (width - count))
        start += count
    return torch.tensor(rows, dtype=torch.long, device=device)


def classify_embeddings(
    embeddings: torch.Tensor, text_classifier: torch.Tensor, logit_scale: torch.Tensor, synonym_counts: list[int]
) -> torch.Tensor:
    """Cosine-similarity logits against the text classifier, max over each class's synonyms.

    Args:
        embeddings: [B, Q, D] region embeddings in CLIP space (any norm).
        text_classifier: [T + 1, D] unit-norm synonym embeddings, the void embedding last.
        logit_scale: scalar log-temperature; exp is clamped at 100 like CLIP.
        synonym_counts: synonyms per class, summing to T.

    Returns:
        [B, Q, K + 1] logits, void last.
    """
    scale = torch.clamp(logit_scale.exp(), max=100)
    logits = scale * F.normalize(embeddings, dim=-1) @ text_classifier.T  # [B, Q, T + 1]
    index = synonym_index(synonym_counts, logits.device)  # [K, S]
    per_class = logits[..., index].max(-1).values  # [B, Q, K]
    return torch.cat([per_class, logits[..., -1:]], dim=-1)
