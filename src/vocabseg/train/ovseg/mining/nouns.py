"""Caption nouns by a part-of-speech tagger (TextBlob's pattern tagger: a Brill-style tagger whose
lexicon ships inside the package, so it runs offline; the ``mining`` extra).

A noun is a token tagged NN or NNS (common nouns; proper nouns NNP* are left out as they
rarely name what a region shows), lower-cased, plurals singularised by TextBlob's inflection
rules, repeated nouns kept once, in caption order.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

from vocabseg.errors import ConfigError

NOUN_TAGS = ("NN", "NNS")


@functools.lru_cache(maxsize=1)
def _tagger() -> tuple[Callable[[str], list[tuple[str, str]]], Callable[[str], str]]:
    try:
        from textblob import Word
        from textblob.en.taggers import PatternTagger
    except ImportError:
        raise ConfigError("mining nouns needs TextBlob: pip install 'vocabseg[mining]'") from None
    tagger = PatternTagger()
    return tagger.tag, lambda word: str(Word(word).singularize())


def extract_nouns(caption: str) -> list[str]:
    """The common nouns of a caption, e.g. "Two dogs chase a frisbee." -> ["dog", "frisbee"]."""
    tag, singular = _tagger()
    nouns: list[str] = []
    for word, pos in tag(caption):
        if pos not in NOUN_TAGS or not word.isalpha():
            continue
        noun = word.lower() if pos == "NN" else singular(word.lower())
        if noun not in nouns:
            nouns.append(noun)
    return nouns
