"""Built-in vocabularies: the class lists FC-CLIP is trained and evaluated on.

Each vocabulary lives in ``vocabularies/<name>.txt``, one class per line in
class-index order, with tab-separated fields::

    dataset_id <TAB> thing|stuff <TAB> r,g,b (or -) <TAB> synonym,synonym,...

Names, synonyms and order are the official FC-CLIP prompt-engineered lists
after the official synonym split, so class indices line up with the official
evaluation. Lines starting with '#' are comments.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable
from importlib import resources

from vocabseg.errors import VocabularyError
from vocabseg.text.vocabulary import VocabClass, Vocabulary
from vocabseg.text.zero_shot import SEEN_SUFFIX, UNSEEN_CLASSES, seen_subset, unseen_classes

# Names of the data files shipped in vocabseg/text/vocabularies/.
_DATA_FILES = (
    "coco_panoptic",  # 133: 80 things + 53 stuff (training vocabulary)
    "ade20k_150",  # 150: 100 things + 50 stuff
    "ade20k_847",  # 847, semantic only
    "pascal_context_59",
    "pascal_context_459",
    "pascal_voc_20",  # VOC without background
    "pascal_voc_21",  # VOC with background as class 0
    "cityscapes",  # 19 train ids
    "mapillary_vistas",  # 65
    "coco_stuff",  # 171
    "lvis",  # 1203, all things
    # OVSeg's official class strings (whole, comma-joined names), in vocabseg's class order
    "ovseg_ade20k_150",
    "ovseg_ade20k_847",
    "ovseg_pascal_context_59",
    "ovseg_pascal_context_459",
    "ovseg_pascal_voc_20",
    # Cascade-CLIP's official class strings in dataset order (text/zero_shot.py has their unseen classes)
    "cascade_voc_20",
    "cascade_context_59",
    "cascade_coco_stuff_171",
)

DEFAULT_VOCABULARY = "default"


def _parse_color(field: str) -> tuple[int, int, int] | None:
    if field == "-":
        return None
    r, g, b = (int(v) for v in field.split(","))
    return (r, g, b)


def _parse_row(line: str) -> VocabClass:
    dataset_id, kind, color, names = line.split("\t")
    return VocabClass(
        names=tuple(names.split(",")),
        is_thing=kind == "thing",
        dataset_id=int(dataset_id),
        color=_parse_color(color),
    )


def _load_data_file(name: str) -> Vocabulary:
    data_file = resources.files("vocabseg.text").joinpath("vocabularies").joinpath(f"{name}.txt")
    text = data_file.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line and not line.startswith("#")]
    return Vocabulary(name=name, classes=tuple(_parse_row(line) for line in rows))


def _split_things_stuff(vocab: Vocabulary) -> tuple[list[VocabClass], list[VocabClass]]:
    # The official demo keeps a stuff class only if its name string differs from
    # every thing class's (a list-membership test on the raw strings).
    things = [c for c in vocab.classes if c.is_thing]
    thing_names = {c.names for c in things}
    stuff = [c for c in vocab.classes if c.names not in thing_names]
    return things, stuff


def default_vocabulary() -> Vocabulary:
    """The official FC-CLIP demo vocabulary: COCO + ADE20K-150 + LVIS.

    Order (the class index): COCO things (80), ADE20K things (100), LVIS (1203,
    all things), COCO stuff (53), ADE20K stuff (50): 1486 classes. Exactly as
    the demo, classes are NOT de-duplicated across datasets (e.g. "person"-like
    classes appear several times); within one dataset a stuff class is dropped
    only if its synonym list equals a thing class's. LVIS classes take COCO's
    colours, cycled in COCO class order. Dataset ids are dropped since the
    classes come from different datasets.

    Returns:
        The demo vocabulary, named "default".
    """
    coco, ade, lvis = (get_vocabulary(n) for n in ("coco_panoptic", "ade20k_150", "lvis"))
    coco_things, coco_stuff = _split_things_stuff(coco)
    ade_things, ade_stuff = _split_things_stuff(ade)
    colors = itertools.cycle(c.color for c in coco.classes)
    lvis_things = [dataclasses.replace(c, color=next(colors)) for c in lvis.classes]
    ordered = coco_things + ade_things + lvis_things + coco_stuff + ade_stuff
    classes = tuple(dataclasses.replace(c, dataset_id=None) for c in ordered)
    return Vocabulary(name=DEFAULT_VOCABULARY, classes=classes)


def _seen_vocabulary(name: str) -> Vocabulary:
    """A zero-shot benchmark's vocabulary without its official unseen classes."""
    return seen_subset(get_vocabulary(name), unseen_classes(name))


# name -> loader; every built-in vocabulary is one entry.
_BUILTINS: dict[str, Callable[[], Vocabulary]] = {
    **{name: functools.partial(_load_data_file, name) for name in _DATA_FILES},
    DEFAULT_VOCABULARY: default_vocabulary,
    # The seen classes of each zero-shot benchmark: the inductive models' training vocabulary.
    **{name + SEEN_SUFFIX: functools.partial(_seen_vocabulary, name) for name in UNSEEN_CLASSES},
}


# Short names people type, each naming exactly one vocabulary. A bare stem shared by several
# ("voc", "ade20k", "coco") is deliberately absent: match_vocabulary_name reports all of them.
_ALIASES = {
    "ade150": "ade20k_150",
    "ade847": "ade20k_847",
    "pc59": "pascal_context_59",
    "pc459": "pascal_context_459",
    "voc20": "pascal_voc_20",
    "voc21": "pascal_voc_21",
    "mapillary": "mapillary_vistas",
    "vistas": "mapillary_vistas",
}
# Stems that are not a name prefix but still clearly mean one of a family.
_SHORT_STEMS = {
    "ade": ("ade20k_150", "ade20k_847"),
    "pc": ("pascal_context_59", "pascal_context_459"),
    "context": ("pascal_context_59", "pascal_context_459"),
    "voc": ("pascal_voc_20", "pascal_voc_21"),
}


def list_vocabularies() -> list[str]:
    """Names accepted by :func:`get_vocabulary`, sorted."""
    return sorted(_BUILTINS)


def normalize_vocabulary_name(name: str) -> str:
    """Case-folded, with '-' and spaces as '_': "ADE20K-150" -> "ade20k_150"."""
    return "_".join(name.strip().casefold().replace("-", " ").replace("_", " ").split())


def vocabulary_aliases() -> dict[str, str]:
    """Alias -> built-in name, for the unambiguous short names."""
    return dict(_ALIASES)


def match_vocabulary_name(name: str) -> tuple[str, ...]:
    """The built-in vocabularies a user's name may mean.

    A name, in any case, or an alias is one match; a stem shared by several
    ("ade20k" -> ade20k_150 and ade20k_847) is each of them; anything else none.
    The ``ovseg_`` lists match only a name that starts with ``ovseg``.

    Args:
        name: What the user typed, e.g. "ADE20K_150", "voc20" or "coco".

    Returns:
        Matching built-in names, sorted.
    """
    key = normalize_vocabulary_name(name)
    if key in _BUILTINS:
        return (key,)
    if key in _ALIASES:
        return (_ALIASES[key],)
    if key in _SHORT_STEMS:
        return tuple(sorted(_SHORT_STEMS[key]))
    return tuple(n for n in list_vocabularies() if n.startswith(key + "_") and key)


def get_vocabulary(name: str) -> Vocabulary:
    """Returns a built-in vocabulary by name (case-insensitive; aliases like "voc20" too).

    Vocabularies are immutable, so the result is cached and shared.

    Args:
        name: One of :func:`list_vocabularies`, e.g. "coco_panoptic", in any
            case, or an unambiguous alias (:func:`vocabulary_aliases`).

    Raises:
        ValueError: If ``name`` is not a built-in vocabulary or names several.
    """
    matches = match_vocabulary_name(name)
    if len(matches) > 1:
        raise VocabularyError(
            f"vocabulary {name!r} is ambiguous; did you mean {' or '.join(map(repr, matches))}?"
        )
    if not matches:
        raise VocabularyError(
            f"unknown vocabulary {name!r}; valid names: {', '.join(list_vocabularies())}"
        )
    return _load_builtin(matches[0])


@functools.cache
def _load_builtin(name: str) -> Vocabulary:
    return _BUILTINS[name]()
