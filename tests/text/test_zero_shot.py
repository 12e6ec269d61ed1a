"""The official zero-shot splits, the Cascade-CLIP vocabularies and templates, against the official code."""
import pytest
import torch
import torch.nn.functional as F

from vocabseg.errors import VocabularyError
from vocabseg.text import VocabClass, Vocabulary, build_text_classifier, get_vocabulary, seen_mask
from vocabseg.text.templates import CASCADE_CLIP_SINGLE_TEMPLATE, CASCADE_CLIP_TEMPLATES
from vocabseg.text.zero_shot import UNSEEN_CLASSES, seen_flags, seen_subset, unseen_classes

# Unseen class names of the official configs' novel_class lists (configs/{voc_20,context_59,coco_171}).
UNSEEN_NAMES = {
    "cascade_voc_20": ["pottedplant", "sheep", "sofa", "train", "tvmonitor"],
    "cascade_context_59": ["aeroplane", "bed", "bedclothes", "boat", "bottle", "car", "cloth", "cow", "keyboard",
                           "plate"],
    "cascade_coco_stuff_171": ["cow", "giraffe", "suitcase", "frisbee", "skateboard", "carrot", "scissors",
                               "cardboard", "clouds", "grass", "playingfield", "river", "road", "tree",
                               "wall-concrete"],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(UNSEEN_CLASSES))
def test_unseen_ids_name_the_official_classes(name):
    names = get_vocabulary(name).class_names
    assert [names[i] for i in unseen_classes(name)] == UNSEEN_NAMES[name]


@pytest.mark.parametrize("name", sorted(UNSEEN_CLASSES))
def test_seen_mask_against_the_seen_vocabulary_is_the_official_split(name):
    full, seen = get_vocabulary(name), get_vocabulary(f"{name}_seen")
    mask = seen_mask(full, seen)
    assert mask == seen_flags(len(full), UNSEEN_CLASSES[name])
    assert [i for i, s in enumerate(mask) if not s] == list(UNSEEN_CLASSES[name])
    assert seen.class_names == [c for c, s in zip(full.class_names, mask) if s]  # order kept


def test_official_class_strings_and_order():
    voc, ctx, coco = (get_vocabulary(n).class_names for n in ("cascade_voc_20", "cascade_context_59",
                                                                "cascade_coco_stuff_171"))
    assert voc[10] == "diningtable" and voc[15] == "pottedplant" and voc[19] == "tvmonitor"  # raw VOC names
    assert ctx == sorted(ctx) and ctx[32] == "light" and ctx[40] == "road"  # alphabetical as the dataloader
    assert coco[0] == "person" and coco[80] == "banner" and coco[-1] == "wood" and coco[160] == "wall-concrete"
    assert [c.dataset_id for c in get_vocabulary("cascade_context_59").classes] == list(range(1, 60))
    assert [c.dataset_id for c in get_vocabulary("cascade_coco_stuff_171").classes] == list(range(171))


def test_seen_subset_and_bad_ids():
    vocab = Vocabulary("v", tuple(VocabClass((n,)) for n in ("a", "b", "c")))
    assert seen_subset(vocab, [1]).class_names == ["a", "c"] and seen_subset(vocab, [1]).name == "v_seen"
    with pytest.raises(VocabularyError, match="index 3 is outside 0..2"):
        seen_flags(3, [3])
    with pytest.raises(VocabularyError, match="no official zero-shot split"):
        unseen_classes("pascal_voc_20")


def test_cascade_templates_as_the_notebook():
    assert len(CASCADE_CLIP_TEMPLATES) == 15 and len(set(CASCADE_CLIP_TEMPLATES)) == 15
    assert CASCADE_CLIP_TEMPLATES[8] == "a {} in the scene."
    assert CASCADE_CLIP_TEMPLATES[-1] == "This is one {} in the scene."
    assert CASCADE_CLIP_SINGLE_TEMPLATE == ("a photo of a {}",)  # no period (voc12_single.npy)


def test_class_embedding_is_normalised_mean_of_normalised_prompts():
    """The notebook's multi-template rule, by hand, equals build_text_classifier's."""
    vocab = Vocabulary("v", (VocabClass(("cat",)), VocabClass(("sky",))))
    table = {}

    def encode(prompts):  # a fixed random feature per prompt, of varied norms
        return torch.stack([table.setdefault(p, torch.randn(8, generator=torch.Generator().manual_seed(len(table))) *
                                             (1 + len(table))) for p in prompts])

    got = build_text_classifier(vocab, encode, CASCADE_CLIP_TEMPLATES).embeddings  # [2, 8]
    for k, name in enumerate(("cat", "sky")):
        per_template = F.normalize(encode([t.format(name) for t in CASCADE_CLIP_TEMPLATES]), dim=-1)  # [15, 8]
        torch.testing.assert_close(got[k], F.normalize(per_template.mean(0), dim=0))
