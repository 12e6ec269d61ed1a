"""Custom vocabulary syntax, file loading, spec resolution and their errors."""
import pytest

from vocabseg.errors import VocabularyError
from vocabseg.text import (
    VocabClass,
    Vocabulary,
    get_vocabulary,
    load_vocabulary_file,
    parse_vocabulary,
    resolve_vocabulary,
)


def test_parse_inline_classes_synonyms_and_stuff():
    vocab = parse_vocabulary("car, automobile; person;grass , lawn [stuff]\n tree [thing]")
    assert vocab == Vocabulary(
        "custom",
        (
            VocabClass(("car", "automobile")),
            VocabClass(("person",)),
            VocabClass(("grass", "lawn"), is_thing=False),
            VocabClass(("tree",)),
        ),
    )


def test_parse_ignores_blank_entries_comments_and_collapses_spaces():
    vocab = parse_vocabulary("traffic   light;;\n\n# a comment\ndog # inline\n", name="mine")
    assert vocab.name == "mine"
    assert vocab.class_names == ["traffic light", "dog"]


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "no classes found"),
        (" ;\n# only a comment", "no classes found"),
        ("cat, , kitty", "empty class name"),
        ("cat,", "empty class name"),
        ("[stuff]", "empty class name"),
        ("cat; dog; Cat", "duplicate class 'Cat'"),
        ("sky [stuf]", r"unknown marker \[stuf\]"),
    ],
)
def test_parse_errors(text, match):
    with pytest.raises(ValueError, match=match) as info:
        parse_vocabulary(text)
    message = str(info.value)
    assert "\n" not in message and "vocabulary 'custom'" in message


def test_load_file(tmp_path):
    path = tmp_path / "street.txt"
    text = "# street scene\ncar, automobile\n\nroad [stuff]  # asphalt\n"
    path.write_text(text, encoding="utf-8")
    vocab = load_vocabulary_file(path)
    assert vocab.name == "street"
    assert vocab.class_names == ["car", "road"]
    assert vocab.thing_mask == [True, False]


def test_load_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(ValueError, match="missing.txt.*cannot read"):
        load_vocabulary_file(missing)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(ValueError, match="binary.txt.*UTF-8"):
        load_vocabulary_file(binary)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="empty.txt.*no classes"):
        load_vocabulary_file(empty)


def test_resolve_builtin_file_inline_and_vocabulary(tmp_path):
    assert resolve_vocabulary("ade20k_150") is get_vocabulary("ade20k_150")
    path = tmp_path / "mine.txt"
    path.write_text("cat\ndog\n")
    assert resolve_vocabulary(str(path)).class_names == ["cat", "dog"]
    assert resolve_vocabulary(path).name == "mine"
    assert resolve_vocabulary("cat; sky [stuff]").thing_mask == [True, False]
    assert resolve_vocabulary("cat").class_names == ["cat"]
    assert resolve_vocabulary("bag/purse").class_names == ["bag/purse"]
    vocab = Vocabulary("v", (VocabClass(("x",)),))
    assert resolve_vocabulary(vocab) is vocab


def test_resolve_refuses_typos_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'coco_panoptic'"):
        resolve_vocabulary("coco_panoptc")
    with pytest.raises(ValueError, match="does not exist"):
        resolve_vocabulary(str(tmp_path / "nope.txt"))


def test_resolve_matches_builtin_names_in_any_case_and_by_alias():
    assert resolve_vocabulary("ADE20K_150") is get_vocabulary("ade20k_150")
    assert resolve_vocabulary(" Coco_Stuff ") is get_vocabulary("coco_stuff")
    assert resolve_vocabulary("voc21") is get_vocabulary("pascal_voc_21")


@pytest.mark.parametrize(("spec", "match"), [
    ("ade20k", "'ade20k' is ambiguous; did you mean 'ade20k_150' or 'ade20k_847'.*'ade20k;'"),
    ("coco", "'coco' is ambiguous; did you mean 'coco_panoptic' or 'coco_stuff'.*'coco;'"),
    ("ADE20K", "'ADE20K' is ambiguous.*'ADE20K;'"),
    ("levis", "did you mean 'lvis'.*'levis;'"),
])
def test_a_lone_word_naming_builtins_is_refused_with_the_quoting_rule(spec, match):
    with pytest.raises(VocabularyError, match=match) as info:
        resolve_vocabulary(spec)
    assert "\n" not in str(info.value)


def test_a_trailing_semicolon_or_class_syntax_makes_it_a_class():
    assert resolve_vocabulary("coco;").class_names == ["coco"]
    assert resolve_vocabulary("ade20k [stuff]").thing_mask == [False]
    assert resolve_vocabulary("coco, cocoa").class_names == ["coco"]
    for word in ("person", "cat", "traffic light"):
        assert resolve_vocabulary(word).class_names == [word]


def test_a_file_named_like_a_stem_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "coco").write_text("cat\ndog\n")
    assert resolve_vocabulary("coco").class_names == ["cat", "dog"]


def test_a_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_bytes("person\ncar\n".encode("utf-8-sig"))
    assert load_vocabulary_file(path).class_names == ["person", "car"]
