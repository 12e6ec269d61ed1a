"""Custom vocabularies written by users, inline or in a text file.

Syntax (the same inline and in files)::

    # a comment runs to the end of the line
    car, automobile, sedan
    person, people; dog
    grass, lawn [stuff]

Classes are separated by ';' or newlines, synonyms by ','; the first name is
the display name. A class is a thing unless it ends with ``[stuff]``
(``[thing]`` is accepted for symmetry). Blank entries are ignored, so a
trailing ';' makes a lone word that is also a built-in name ("coco;") a
one-class vocabulary.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from vocabseg.errors import VocabularyError, did_you_mean
from vocabseg.text.builtin import (
    get_vocabulary,
    list_vocabularies,
    match_vocabulary_name,
    normalize_vocabulary_name,
    vocabulary_aliases,
)
from vocabseg.text.vocabulary import VocabClass, Vocabulary

# "names [tag]" -> ("names", "tag"); the tag must close the entry.
_TAG_RE = re.compile(r"(.*?)\s*\[\s*(\w+)\s*\]")
_EXAMPLE = "e.g. 'car, automobile; grass [stuff]'"


def _entries(text: str) -> list[str]:
    """Splits text into non-blank class entries, dropping '#' comments."""
    entries: list[str] = []
    for line in text.splitlines():
        entries += line.split("#", 1)[0].split(";")
    return [e.strip() for e in entries if e.strip()]


def _split_tag(entry: str, source: str) -> tuple[str, bool]:
    """Returns the names part of an entry and whether the class is a thing."""
    match = _TAG_RE.fullmatch(entry)
    if match is None:
        return entry, True
    body, tag = match.group(1), match.group(2).lower()
    if tag not in ("stuff", "thing"):
        raise VocabularyError(
            f"{source}: unknown marker [{match.group(2)}] in {entry!r}; use [stuff] or [thing]"
        )
    return body, tag == "thing"


def _parse_class(entry: str, source: str) -> VocabClass:
    body, is_thing = _split_tag(entry, source)
    # Collapse inner whitespace: "traffic   light" prompts like "traffic light".
    names = tuple(" ".join(n.split()) for n in body.split(","))
    if not all(names):
        raise VocabularyError(
            f"{source}: empty class name in {entry!r}; give every class at least one "
            f"name and no empty synonyms between commas, {_EXAMPLE}"
        )
    return VocabClass(names=names, is_thing=is_thing)


def _check_unique(classes: list[VocabClass], source: str) -> None:
    # Case-insensitive because CLIP's tokenizer lower-cases: "Cat" == "cat".
    seen: set[str] = set()
    for c in classes:
        key = c.name.casefold()
        if key in seen:
            raise VocabularyError(
                f"{source}: duplicate class {c.name!r}; remove one or merge their "
                "synonyms into a single class"
            )
        seen.add(key)


def _parse(text: str, name: str, source: str) -> Vocabulary:
    classes = [_parse_class(e, source) for e in _entries(text)]
    if not classes:
        raise VocabularyError(
            f"{source}: no classes found; separate classes with ';' or newlines, {_EXAMPLE}"
        )
    _check_unique(classes, source)
    return Vocabulary(name=name, classes=tuple(classes))


def parse_vocabulary(text: str, name: str = "custom") -> Vocabulary:
    """Parses an inline vocabulary such as ``"cat; dog, puppy; sky [stuff]"``.

    Args:
        text: Vocabulary in the module's syntax.
        name: Name given to the vocabulary.

    Raises:
        ValueError: On an empty vocabulary, an empty class name or synonym, an
            unknown ``[marker]`` or a duplicate class.
    """
    return _parse(text, name, source=f"vocabulary {name!r}")


def load_vocabulary_file(path: str | os.PathLike) -> Vocabulary:
    """Reads a vocabulary file (UTF-8, module syntax); its name is the file stem.

    Raises:
        ValueError: If the file cannot be read, or on the errors of
            :func:`parse_vocabulary`.
    """
    path = Path(path)
    source = f"vocabulary file '{path}'"
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from Windows editors is not part of a name
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise VocabularyError(
            f"{source}: cannot read it ({reason}); check the path and that it is UTF-8 text"
        ) from err
    return _parse(text, path.stem, source)


def _looks_like_path(spec: str) -> bool:
    # Conservative: "bag/purse" stays a class name, "./bag" or "x.txt" is a path.
    return spec.endswith(".txt") or spec.startswith(("/", "./", "../", "~"))


def _is_bare_token(spec: str) -> bool:
    """One entry with no class syntax: could be a built-in name as well as a class."""
    return not any(mark in spec for mark in (";", ",", "[", "\n"))


def _reject_near_miss(spec: str, matches: tuple[str, ...]) -> None:
    """Refuses a lone word that names several built-ins or is a near miss of one."""
    quoting = f"for a one-class vocabulary write {spec + ';'!r}"
    if len(matches) > 1:
        raise VocabularyError(
            f"vocabulary {spec!r} is ambiguous; did you mean {' or '.join(map(repr, matches))}? ({quoting})"
        )
    known = {**{n: n for n in list_vocabularies()}, **vocabulary_aliases()}
    close = did_you_mean(normalize_vocabulary_name(spec), known)
    if close:
        raise VocabularyError(
            f"unknown vocabulary {spec!r}; did you mean {known[close]!r}? valid names: "
            f"{', '.join(list_vocabularies())} (or a file path, or inline classes like 'cat; dog'; {quoting})"
        )


def resolve_vocabulary(spec: str | os.PathLike | Vocabulary) -> Vocabulary:
    """Turns a user's vocabulary argument into a :class:`Vocabulary`.

    Tried in order: an existing ``Vocabulary`` (returned as is), a built-in
    name (any case, or an unambiguous alias such as ``"voc20"``), a path to an
    existing file, inline text. A lone word that names several built-ins
    (``"ade20k"``, ``"coco"``) or is a near miss of one (``"coco_panoptc"``)
    is refused rather than becoming a one-class vocabulary; a trailing ``';'``
    (``"coco;"``) marks it as inline text, i.e. one class.

    Raises:
        ValueError: For a missing ``.txt``/path-like file, an ambiguous or
            near-miss name, or the errors of :func:`parse_vocabulary`.
    """
    if isinstance(spec, Vocabulary):
        return spec
    if isinstance(spec, os.PathLike):
        return load_vocabulary_file(spec)
    token = spec.strip()
    matches = match_vocabulary_name(token) if _is_bare_token(token) else ()
    if len(matches) == 1:
        return get_vocabulary(matches[0])
    path = os.path.expanduser(token)
    if os.path.isfile(path):
        return load_vocabulary_file(path)
    if "\n" not in spec and ";" not in spec:  # one entry: maybe a mistyped name or path
        if _looks_like_path(token):
            raise VocabularyError(f"vocabulary file '{path}' does not exist; check the path")
        if _is_bare_token(token):
            _reject_near_miss(token, matches)
    return parse_vocabulary(spec)
