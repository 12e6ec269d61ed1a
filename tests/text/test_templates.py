"""Prompt expansion order and template facts."""
import pytest

from vocabseg.text import (
    DEFAULT_TEMPLATES,
    VocabClass,
    Vocabulary,
    expand_prompts,
    flat_synonyms,
    get_vocabulary,
    synonym_counts,
)

TOY = Vocabulary("toy", (VocabClass(("cat", "kitty")), VocabClass(("sky",), is_thing=False)))


def test_default_templates_are_the_14_vild_prompts():
    assert len(DEFAULT_TEMPLATES) == 14
    assert DEFAULT_TEMPLATES[0] == "a photo of a {}."
    assert DEFAULT_TEMPLATES[1] == "This is a photo of a {}"  # no final period, as official
    assert DEFAULT_TEMPLATES[-1] == "There is a large {} in the scene."
    assert all(t.count("{}") == 1 for t in DEFAULT_TEMPLATES)


def test_expand_order_is_class_synonym_template():
    prompts, counts = expand_prompts(TOY, ("a {}.", "the {}"))
    assert prompts == ["a cat.", "the cat", "a kitty.", "the kitty", "a sky.", "the sky"]
    assert counts == [2, 1]


def test_expand_with_default_templates():
    prompts, counts = expand_prompts(TOY)
    assert len(prompts) == 3 * 14
    assert prompts[13] == "There is a large cat in the scene."
    assert prompts[14] == "a photo of a kitty."
    assert counts == synonym_counts(TOY) == [2, 1]


def test_flat_synonyms_and_counts_for_coco():
    coco = get_vocabulary("coco_panoptic")
    names = flat_synonyms(coco)
    assert len(names) == sum(synonym_counts(coco)) == 254
    assert names[:2] == ["person", "child"]


def test_no_templates_is_an_error():
    with pytest.raises(ValueError, match="template"):
        expand_prompts(TOY, ())
