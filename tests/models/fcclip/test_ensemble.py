"""Tests for vocabseg.model.ensemble."""
from __future__ import annotations

import math

import torch

from vocabseg.models.fcclip.model import geometric_ensemble

ALPHA, BETA = 0.4, 0.8
SEEN = torch.tensor([True, False, True])  # K = 3
IN_LOGITS = [1.0, 2.0, 0.5, 0.3]  # void last
OUT_LOGITS = [0.2, -1.0, 1.5, 9.0]  # the void column is ignored


def _softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def _hand_ensemble(in_logits, out_logits, weights) -> list[float]:
    """log([p_1 .. p_K, void]) with p_c = softmax_c(p_in^(1-w) p_out^w) * (1 - void)."""
    p_in, p_out = _softmax(in_logits[:-1]), _softmax(out_logits[:-1])
    combined = _softmax([(1 - w) * math.log(a) + w * math.log(b) for a, b, w in zip(p_in, p_out, weights)])
    void = _softmax(in_logits)[-1]
    return [math.log(p * (1 - void) + 1e-8) for p in combined] + [math.log(void + 1e-8)]


def _run(in_logits=IN_LOGITS, out_logits=OUT_LOGITS, valid=None) -> torch.Tensor:
    return geometric_ensemble(
        torch.tensor([[in_logits]]), torch.tensor([[out_logits]]), SEEN, alpha=ALPHA, beta=BETA, valid_masks=valid
    )[0, 0]


def test_matches_hand_computation_with_seen_and_unseen_weights():
    expected = _hand_ensemble(IN_LOGITS, OUT_LOGITS, [ALPHA, BETA, ALPHA])
    torch.testing.assert_close(_run(), torch.tensor(expected), atol=1e-5, rtol=0)
    torch.testing.assert_close(_run(valid=torch.tensor([[True]])), torch.tensor(expected), atol=1e-5, rtol=0)


def test_invalid_mask_falls_back_to_in_vocabulary_probabilities():
    p_in, void = _softmax(IN_LOGITS[:-1]), _softmax(IN_LOGITS)[-1]
    expected = [math.log(p * (1 - void) + 1e-8) for p in p_in] + [math.log(void + 1e-8)]
    torch.testing.assert_close(_run(valid=torch.tensor([[False]])), torch.tensor(expected), atol=1e-5, rtol=0)
    # with w = 0 the non-void part is just the full in-vocabulary softmax
    torch.testing.assert_close(_run(valid=torch.tensor([[False]])).exp(), torch.tensor(_softmax(IN_LOGITS)),
                               atol=1e-6, rtol=0)


def test_valid_masks_apply_per_query():
    in_logits = torch.tensor([[IN_LOGITS, IN_LOGITS]])
    out_logits = torch.tensor([[OUT_LOGITS, OUT_LOGITS]])
    result = geometric_ensemble(in_logits, out_logits, SEEN, alpha=ALPHA, beta=BETA,
                                valid_masks=torch.tensor([[True, False]]))
    torch.testing.assert_close(result[0, 0], _run(valid=torch.tensor([[True]])))
    torch.testing.assert_close(result[0, 1], _run(valid=torch.tensor([[False]])))


def test_void_column_is_log_of_the_in_vocabulary_void_probability():
    assert math.isclose(_run()[-1].item(), math.log(_softmax(IN_LOGITS)[-1] + 1e-8), abs_tol=1e-6)
    changed = OUT_LOGITS[:-1] + [-50.0]
    torch.testing.assert_close(_run(out_logits=changed), _run())  # out-of-vocab void ignored


def test_rows_are_log_probabilities():
    g = torch.Generator().manual_seed(0)
    in_logits, out_logits = torch.randn(2, 5, 4, generator=g) * 3, torch.randn(2, 5, 4, generator=g) * 3
    result = geometric_ensemble(in_logits, out_logits, SEEN, alpha=ALPHA, beta=BETA)
    assert result.shape == (2, 5, 4)
    # each of the K + 1 entries carries the +1e-8
    torch.testing.assert_close(result.exp().sum(-1), torch.full((2, 5), 1 + 4e-8), atol=1e-6, rtol=0)


def test_underflowed_probability_does_not_become_nan():
    # p_out = 0 for seen class 0: its log is -inf on both sides; multiplying the unused
    # side by a 0/1 mask would give -inf * 0 = NaN
    result = _run(out_logits=[-1e4, -1.0, 1.5, 0.0])
    assert not torch.isnan(result).any()
    assert math.isclose(result[0].item(), math.log(1e-8), rel_tol=1e-6)
