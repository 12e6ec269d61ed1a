"""FC-CLIP's geometric ensemble of the in-vocabulary and out-of-vocabulary classifiers."""
from __future__ import annotations

import torch


def geometric_ensemble(
    in_vocab_logits: torch.Tensor,
    out_vocab_logits: torch.Tensor,
    seen_mask: torch.Tensor,
    *,
    alpha: float,
    beta: float,
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
        alpha = torch.full_like(p_in, alpha) * valid
        beta = torch.full_like(p_in, beta) * valid
    log_seen = (p_in ** (1 - alpha) * p_out**alpha).log()
    log_unseen = (p_in ** (1 - beta) * p_out**beta).log()
    # Select rather than multiply by the 0/1 mask: identical for finite values, but a
    # probability that underflowed to 0 (log = -inf) on the unused side cannot turn into NaN.
    combined = torch.where(seen_mask.to(p_in.device).bool(), log_seen, log_unseen).softmax(-1)
    void_prob = in_vocab_logits.softmax(-1)[..., -1:]
    probs = torch.cat([combined * (1.0 - void_prob), void_prob], dim=-1)
    return torch.log(probs + 1e-8)
