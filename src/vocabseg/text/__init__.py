"""Vocabularies, prompt templates and the text-embedding cache."""
from vocabseg.text.builtin import default_vocabulary, get_vocabulary, list_vocabularies
from vocabseg.text.cache import (
    TextEmbeddingCache,
    TextEmbeddings,
    build_text_classifier,
    cache_key,
    default_cache_dir,
)
from vocabseg.text.classifier import TextClassifier
from vocabseg.text.parse import load_vocabulary_file, parse_vocabulary, resolve_vocabulary
from vocabseg.text.templates import DEFAULT_TEMPLATES, expand_prompts, flat_synonyms, synonym_counts
from vocabseg.text.vocabulary import VocabClass, Vocabulary, seen_mask

__all__ = [
    "DEFAULT_TEMPLATES",
    "TextClassifier",
    "TextEmbeddings",
    "TextEmbeddingCache",
    "VocabClass",
    "Vocabulary",
    "build_text_classifier",
    "cache_key",
    "default_cache_dir",
    "default_vocabulary",
    "expand_prompts",
    "flat_synonyms",
    "get_vocabulary",
    "list_vocabularies",
    "load_vocabulary_file",
    "parse_vocabulary",
    "resolve_vocabulary",
    "seen_mask",
    "synonym_counts",
]
