"""Built-in vocabularies against facts read from the official FC-CLIP lists."""
import pytest

from vocabseg.errors import VocabularyError
from vocabseg.text import (
    VocabClass,
    Vocabulary,
    default_vocabulary,
    get_vocabulary,
    list_vocabularies,
    seen_mask,
)
from vocabseg.text.builtin import match_vocabulary_name

# name -> (classes, things); things follow the official per-class isthing flags.
EXPECTED_SIZES = {
    "coco_panoptic": (133, 80),
    "ade20k_150": (150, 100),
    "ade20k_847": (847, 0),
    "pascal_context_59": (59, 0),
    "pascal_context_459": (459, 0),
    "pascal_voc_20": (20, 20),
    "pascal_voc_21": (21, 21),
    "cityscapes": (19, 8),
    "mapillary_vistas": (65, 37),
    "coco_stuff": (171, 80),
    "lvis": (1203, 1203),
    "default": (1486, 1383),
    "ovseg_ade20k_150": (150, 100),
    "ovseg_ade20k_847": (847, 0),
    "ovseg_pascal_context_59": (59, 0),
    "ovseg_pascal_context_459": (459, 0),
    "ovseg_pascal_voc_20": (20, 20),
    "cascade_voc_20": (20, 20),
    "cascade_voc_20_seen": (15, 15),
    "cascade_context_59": (59, 0),
    "cascade_context_59_seen": (49, 0),
    "cascade_coco_stuff_171": (171, 80),
    "cascade_coco_stuff_171_seen": (156, 73),  # 7 of the 15 unseen classes are things
}


def test_list_vocabularies():
    assert list_vocabularies() == sorted(EXPECTED_SIZES)


@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_sizes_and_thing_counts(name):
    vocab = get_vocabulary(name)
    num_classes, num_things = EXPECTED_SIZES[name]
    assert vocab.name == name
    assert len(vocab) == num_classes
    assert sum(vocab.thing_mask) == num_things


@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_names_are_clean(name):
    # The official split leaves no empty or padded synonym in any list.
    for c in get_vocabulary(name).classes:
        assert c.names and all(n and n == n.strip() and "," not in n for n in c.names)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown vocabulary 'cocoa'.*coco_panoptic.*lvis"):
        get_vocabulary("cocoa")


def test_names_match_in_any_case_and_by_unambiguous_alias():
    assert get_vocabulary("ADE20K_150") is get_vocabulary("ade20k_150")
    assert get_vocabulary("ade20k-847") is get_vocabulary("ade20k_847")
    assert get_vocabulary("VOC20") is get_vocabulary("pascal_voc_20")
    assert get_vocabulary("mapillary").name == "mapillary_vistas"
    assert match_vocabulary_name("cat") == ()


@pytest.mark.parametrize(("name", "candidates"), [
    ("ade20k", ("ade20k_150", "ade20k_847")),
    ("coco", ("coco_panoptic", "coco_stuff")),
    ("voc", ("pascal_voc_20", "pascal_voc_21")),
])
def test_an_ambiguous_name_is_refused_with_its_candidates(name, candidates):
    assert match_vocabulary_name(name) == candidates
    expected = f"'{name.upper()}' is ambiguous.*'{candidates[0]}' or '{candidates[1]}'"
    with pytest.raises(VocabularyError, match=expected) as info:
        get_vocabulary(name.upper())
    assert "\n" not in str(info.value)


def test_coco_panoptic_spot_checks():
    vocab = get_vocabulary("coco_panoptic")
    person = vocab.classes[0]
    assert person.names[:3] == ("person", "child", "girl") and person.names[-1] == "clothes"
    assert len(person.names) == 17
    assert (person.dataset_id, person.color, person.is_thing) == (1, (220, 20, 60), True)
    assert vocab.classes[1].names == ("bicycle", "bicycles", "bike", "bikes")
    # Things come first (80), then stuff starting with banner (id 92).
    assert vocab.thing_mask == [True] * 80 + [False] * 53
    assert vocab.classes[80] == VocabClass(("banner", "banners"), False, 92, (255, 255, 128))
    assert vocab.classes[-1].names == ("rug",) and vocab.classes[-1].dataset_id == 200


def test_ade20k_150_spot_checks():
    vocab = get_vocabulary("ade20k_150")
    wall = vocab.classes[0]
    assert wall.names == ("wall", "walls", "brick wall", "stone wall", "interior wall")
    assert (wall.dataset_id, wall.color, wall.is_thing) == (0, (120, 120, 120), False)
    assert vocab.classes[-1] == VocabClass(("flag", "flags"), True, 149, (92, 0, 255))


def test_ade20k_847_uses_full_dataset_ids_and_no_colors():
    vocab = get_vocabulary("ade20k_847")
    assert vocab.classes[0].names == ("wall", "walls", "interior wall", "brick wall", "stone wall")
    assert vocab.classes[0].dataset_id == 2978
    assert vocab.classes[1].names == ("building", "buildings", "edifice", "edifices")
    assert vocab.classes[-1].names == ("adding machine", "totalizer", "totaliser")
    assert all(c.color is None for c in vocab.classes)


def test_cityscapes_is_in_train_id_order():
    vocab = get_vocabulary("cityscapes")
    assert vocab.classes[0] == VocabClass(("road", "railroad"), False, 7, (128, 64, 128))
    assert vocab.classes[-1].names == ("bicycle", "bicycles", "bike", "bikes")
    assert vocab.thing_mask == [False] * 11 + [True] * 8


def test_pascal_voc_20_is_21_without_background():
    voc20, voc21 = get_vocabulary("pascal_voc_20"), get_vocabulary("pascal_voc_21")
    assert voc21.classes[0].names[:4] == ("background", "crops", "bush", "shrub")
    assert voc21.classes[1:] == voc20.classes
    assert voc20.classes[0].names == ("aeroplane", "airplane", "aeroplanes", "airplanes")
    assert voc20.classes[-1].names == ("tvmonitor", "monitor", "tv")


def test_duplicate_synonyms_are_kept_as_official():
    # The official background entry lists "bag" twice; both are prompted.
    background = get_vocabulary("pascal_voc_21").classes[0]
    assert background.names.count("bag") == 2


def test_pascal_context_spot_checks():
    assert get_vocabulary("pascal_context_459").classes[0].names == ("accordion",)
    pc59 = get_vocabulary("pascal_context_59")
    assert pc59.classes[0].names == ("aeroplane", "aeroplanes", "airplanes", "airplane")
    assert pc59.classes[-1].names == ("wood piece",)


def test_coco_stuff_comma_space_is_split_like_official():
    vocab = get_vocabulary("coco_stuff")
    wall_wood = next(c for c in vocab.classes if c.dataset_id == 177)
    assert wall_wood.names == ("wall-wood", "wood wall", "wall wood")
    # COCO-Stuff uses its own list: person without "clothes".
    assert vocab.classes[0].names[-1] == "guys"


def test_mapillary_and_lvis_spot_checks():
    mapillary = get_vocabulary("mapillary_vistas")
    assert mapillary.classes[0] == VocabClass(("bird", "birds"), True, 1, (165, 42, 42))
    assert mapillary.classes[-1].names == ("ego vehicle",)
    lvis = get_vocabulary("lvis")
    assert lvis.classes[0].names == ("aerosol can", "spray can")
    assert lvis.classes[-1].names == ("zucchini", "courgette")
    assert [c.dataset_id for c in lvis.classes] == list(range(1, 1204))


def test_default_vocabulary_order_follows_official_demo():
    vocab = default_vocabulary()
    coco, ade, lvis = (get_vocabulary(n) for n in ("coco_panoptic", "ade20k_150", "lvis"))
    coco_things = [c.names for c in coco.classes if c.is_thing]
    coco_stuff = [c.names for c in coco.classes if not c.is_thing]
    ade_things = [c.names for c in ade.classes if c.is_thing]
    ade_stuff = [c.names for c in ade.classes if not c.is_thing]
    lvis_names = [c.names for c in lvis.classes]
    expected = coco_things + ade_things + lvis_names + coco_stuff + ade_stuff
    assert [c.names for c in vocab.classes] == expected
    assert vocab.thing_mask == [True] * 1383 + [False] * 103
    assert all(c.dataset_id is None for c in vocab.classes)
    # LVIS takes COCO colours, cycled in COCO class order.
    assert vocab.classes[180].color == coco.classes[0].color
    assert vocab.classes[180 + 133].color == coco.classes[0].color
    assert get_vocabulary("default") == vocab


def test_seen_mask_hand_made():
    def vocab(*classes):
        return Vocabulary("v", tuple(VocabClass(tuple(c.split(","))) for c in classes))

    train = vocab("person,man", "car")
    test = vocab("man,woman", "dog", "automobile,car", "Car")
    assert seen_mask(test, train) == [True, False, True, False]  # exact, case-sensitive


def test_seen_mask_ade_given_coco():
    # 64 of ADE20K-150's classes share a synonym with COCO panoptic (official rule).
    mask = seen_mask(get_vocabulary("ade20k_150"), get_vocabulary("coco_panoptic"))
    assert sum(mask) == 64 and mask[0]  # "wall" is a COCO stuff synonym
    assert all(seen_mask(get_vocabulary("coco_panoptic"), get_vocabulary("coco_panoptic")))


@pytest.mark.parametrize("name", ["ade20k_150", "ade20k_847", "pascal_context_59", "pascal_context_459",
                                  "pascal_voc_20"])
def test_ovseg_vocabularies_follow_vocabseg_class_order(name):
    ours, official = get_vocabulary(name), get_vocabulary(f"ovseg_{name}")
    assert [(c.dataset_id, c.is_thing) for c in ours.classes] == [(c.dataset_id, c.is_thing) for c in official.classes]


def test_ovseg_strings_join_back_whole():
    from vocabseg.text.vocabulary import join_synonyms

    joined = join_synonyms(get_vocabulary("ovseg_ade20k_150"))
    assert joined.classes[6].names == ("road, route",) and joined.classes[8].names == ("window",)
    assert [c.names[0] for c in join_synonyms(get_vocabulary("ovseg_pascal_voc_20")).classes][:2] == ["aeroplane",
                                                                                                      "bicycle"]
