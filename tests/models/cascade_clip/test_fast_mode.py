"""Cascade-CLIP's fast mode (int8 linears, synonym max before the upsample) and exact mode's synonym max."""
from __future__ import annotations

import pytest
import torch
from open_clip.transformer import ResidualAttentionBlock

from vocabseg.clip.fast_block import run_block_int8
from vocabseg.clip.vit import run_block
from vocabseg.layers.int8_linear import _PACKED, int8_available, int8_linear
from vocabseg.layers.linear_view import linear_view
from vocabseg.models import get_family
from vocabseg.models.cascade_clip.model import _max_over_synonyms
from vocabseg.precision import Recipe, inference_precision
from vocabseg.text import TextClassifier
from vocabseg.text.classifier import synonym_index

FAMILY = get_family("cascade_clip")
CPU = torch.device("cpu")
EXACT = Recipe(False, False, False, "test")
FAST_INT8 = Recipe(True, False, False, "test", int8=True)  # the float32 recipe with int8 linears
needs_int8 = pytest.mark.skipif(not int8_available(CPU)[0], reason="no fbgemm int8 linears on this CPU")


def _gather_max(masks: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The implementation before consecutive slices: gather K x S planes, then max."""
    return masks[:, index].max(dim=2).values


class _Classifier:
    def __init__(self, index: torch.Tensor):
        self.synonym_index = index


def test_synonym_max_over_slices_is_bit_identical_to_the_gather():
    torch.manual_seed(0)
    index = synonym_index([4, 1, 17, 2, 1])  # 'person' has 17 synonyms in pascal_voc_20
    masks = torch.randn(2, 25, 40, 60)
    masks[0, 3, 0, 0] = float("nan")  # a NaN wins a max either way
    masks[1, 5:22, 1, 1] = 0.5  # ties
    new, old = _max_over_synonyms(masks, _Classifier(index)), _gather_max(masks, index)
    assert torch.equal(new.nan_to_num(7.0), old.nan_to_num(7.0)) and new[0, 0, 0, 0].isnan()


def test_synonym_max_falls_back_to_the_gather_for_rows_out_of_order():
    masks = torch.randn(1, 4, 5, 5)
    shuffled = torch.tensor([[2, 3], [0, 0], [1, 1]])  # not consecutive from 0: the gather
    assert torch.equal(_max_over_synonyms(masks, _Classifier(shuffled)), _gather_max(masks, shuffled))
    identity = torch.arange(4)[:, None]
    assert _max_over_synonyms(masks, _Classifier(identity)) is masks


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return FAMILY.build(FAMILY.tiny_config()).eval()


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(1)
    embeddings = torch.nn.functional.normalize(torch.randn(4, 32), dim=-1)
    return TextClassifier(embeddings=embeddings, synonym_index=torch.tensor([[0, 0], [1, 2], [3, 3]]),
                          seen=torch.tensor([True, False, True]), class_names=("cat", "dog", "road"))


def _scores(model, classifier, windows: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    with torch.inference_mode(), inference_precision(model, CPU, recipe):
        return model.window_scores(windows, classifier, 0.1)


def test_exact_window_scores_are_the_forward_pass(tiny, classifier):
    windows = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        direct = tiny(windows, classifier).pred_masks.sigmoid() - 0.1 * classifier.seen.float().view(1, -1, 1, 1)
    assert torch.equal(_scores(tiny, classifier, windows, EXACT), direct)


@needs_int8
def test_fast_scores_use_int8_and_stay_close_to_exact(tiny, classifier):
    torch.manual_seed(2)
    windows = torch.randn(2, 3, 64, 64)
    exact = _scores(tiny, classifier, windows, EXACT)
    fast = _scores(tiny, classifier, windows, FAST_INT8)
    blocks = tiny.clip.visual.transformer.resblocks
    assert blocks[0].mlp.c_fc in _PACKED and tiny.decoder.stages[0].layers[0].cross_attn.k in _PACKED
    assert not torch.equal(fast, exact)  # int8 ran
    assert ((fast - exact).norm() / exact.norm()).item() < 0.005  # 5e-4 measured
    assert torch.equal(_scores(tiny, classifier, windows, FAST_INT8), fast)  # packed once, same numbers


@needs_int8
def test_int8_block_is_close_to_the_exact_block():
    torch.manual_seed(3)
    from open_clip.transformer import QuickGELU

    block = ResidualAttentionBlock(64, 4, act_layer=QuickGELU).eval()
    x = torch.randn(50, 2, 64)  # [L, N, C] sequence-first
    with torch.inference_mode():
        exact, fast = run_block(block, x), run_block_int8(block, x.clone())
        branch = exact - x
        assert ((fast - exact).norm() / branch.norm()).item() < 0.05  # 2.3e-2 measured: int8 steps
        before = x.clone()
        run_block_int8(block, x)
    assert torch.equal(x, before)  # the caller's tokens are not written


@needs_int8
def test_linear_view_is_one_object_and_sees_weight_updates():
    owner = torch.nn.Linear(8, 8)  # any module owns the view
    matrix = torch.nn.Parameter(torch.randn(8, 6))  # [in, out], as CLIP's proj
    first = linear_view(owner, "proj", matrix.T)
    assert linear_view(owner, "proj", matrix.T) is first and first not in dict(owner.named_modules()).values()
    x = torch.randn(3, 8)
    before = int8_linear(first, x)
    assert ((before - x @ matrix).norm() / (x @ matrix).norm()).item() < 0.05
    with torch.no_grad():
        matrix.mul_(2.0)  # in place: the view shares the version counter, so it is packed again
    assert torch.allclose(int8_linear(linear_view(owner, "proj", matrix.T), x), 2 * before, rtol=1e-4, atol=1e-4)
