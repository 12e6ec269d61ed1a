"""Tests for vocabseg.text.classifier: one vocabulary's embeddings, its synonym groups and seen classes."""
from __future__ import annotations

import math

import torch

from vocabseg.text import TextClassifier, TextEmbeddings, VocabClass, Vocabulary
from vocabseg.text.classifier import synonym_index

# 2-D toy CLIP space: class 0 has two synonyms (+x, +y), class 1 one (-x); void is -y.
EMBEDDINGS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
VOID = torch.tensor([[0.0, -1.0]])
SYNONYMS = [2, 1]
CLASSIFIER = TextClassifier(embeddings=EMBEDDINGS, synonym_index=synonym_index(SYNONYMS),
                            seen=torch.tensor([True, False]), class_names=("a", "b"))


def _logits(embedding, log_scale: float, void: torch.Tensor | None = VOID) -> torch.Tensor:
    return CLASSIFIER.logits(torch.tensor(embedding).view(1, 1, 2), torch.tensor(log_scale), void=void)[0, 0]


def test_logits_take_max_over_synonyms_and_put_void_last():
    # (3, 4) normalises to (0.6, 0.8): cosines +x 0.6, +y 0.8, -x -0.6, -y -0.8; scale 10
    torch.testing.assert_close(_logits([3.0, 4.0], math.log(10.0)), torch.tensor([8.0, -6.0, -8.0]))


def test_logits_without_void_have_one_column_per_class():
    torch.testing.assert_close(_logits([3.0, 4.0], math.log(10.0), void=None), torch.tensor([8.0, -6.0]))


def test_logits_are_invariant_to_embedding_norm():
    torch.testing.assert_close(_logits([30.0, 40.0], math.log(10.0)), _logits([0.3, 0.4], math.log(10.0)))


def test_logit_scale_is_clamped_at_100():
    torch.testing.assert_close(_logits([3.0, 4.0], math.log(1000.0)), torch.tensor([80.0, -60.0, -80.0]))
    torch.testing.assert_close(_logits([3.0, 4.0], math.log(1000.0)), _logits([3.0, 4.0], math.log(100.0)))


def test_logits_batched_shape():
    regions = torch.randn(2, 5, 2)
    assert CLASSIFIER.logits(regions, torch.tensor(0.0), void=VOID).shape == (2, 5, 3)
    assert CLASSIFIER.logits(regions, torch.tensor(0.0)).shape == (2, 5, 2)


def test_gradient_flows_to_the_regions_and_the_void():
    regions = torch.randn(1, 3, 2, requires_grad=True)
    void = VOID.clone().requires_grad_(True)
    CLASSIFIER.logits(regions, torch.tensor(1.0), void=void).sum().backward()
    assert regions.grad is not None and void.grad is not None and void.grad.abs().sum() > 0


def test_synonym_index_pads_with_the_first_synonym():
    assert synonym_index([2, 1, 3]).tolist() == [[0, 1, 0], [2, 2, 2], [3, 4, 5]]
    assert synonym_index([1, 1]).tolist() == [[0], [1]]
    assert synonym_index([1]).dtype == torch.long


VOCAB = Vocabulary("toy", (VocabClass(("person", "human")), VocabClass(("giraffe",)),
                           VocabClass(("sky",), is_thing=False)))
TRAIN = Vocabulary("train", (VocabClass(("person",)), VocabClass(("sky",), is_thing=False)))


def _text() -> TextEmbeddings:
    return TextEmbeddings(embeddings=torch.nn.functional.normalize(torch.randn(4, 8), dim=-1), synonym_counts=[2, 1, 1])


def test_build_marks_classes_of_the_training_vocabulary_as_seen():
    text = _text()
    classifier = TextClassifier.build(text, VOCAB, TRAIN)
    assert classifier.seen.tolist() == [True, False, True]
    assert classifier.num_classes == 3 and classifier.class_names == ("person", "giraffe", "sky")
    assert classifier.synonym_index.tolist() == [[0, 1], [2, 2], [3, 3]]
    assert classifier.embeddings is text.embeddings


def test_build_without_training_vocabulary_marks_everything_unseen():
    assert TextClassifier.build(_text(), VOCAB).seen.tolist() == [False, False, False]


def test_to_moves_every_tensor_and_none_is_a_no_op():
    classifier = TextClassifier.build(_text(), VOCAB, TRAIN)
    assert classifier.to(None) is classifier
    moved = classifier.to("meta")
    assert {t.device.type for t in (moved.embeddings, moved.synonym_index, moved.seen)} == {"meta"}
    assert moved.class_names == classifier.class_names
    assert classifier.embeddings.device.type == "cpu"  # frozen: a copy, not an in-place move
