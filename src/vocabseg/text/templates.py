"""Prompt templates and the expansion of a vocabulary into CLIP text prompts."""
from __future__ import annotations

from collections.abc import Sequence

from vocabseg.text.vocabulary import Vocabulary

# The 14 ViLD prompt templates FC-CLIP ensembles over; order matters only for
# bit-exact reproduction (the embeddings are averaged over templates).
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
)

# Cascade-CLIP's 15 templates (its get_embedding.ipynb, used for the Context-59 and COCO-Stuff
# embeddings; the variants' ``prompt_templates``). ``build_text_classifier`` combines them the official
# way: each prompt embedding L2-normalised, the mean over templates, L2-normalised again.
CASCADE_CLIP_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "a {} in the scene.",
    "a photo of a {} in the scene.",
    "There is a {} in the scene.",
    "There is the {} in the scene.",
    "This is a {} in the scene.",
    "This is the {} in the scene.",
    "This is one {} in the scene.",
)
# The single template of the official VOC-20 embeddings (voc12_single.npy): no final period. With one
# template the mean changes nothing, so the official single-prompt embedding comes out.
CASCADE_CLIP_SINGLE_TEMPLATE: tuple[str, ...] = ("a photo of a {}",)


def synonym_counts(vocab: Vocabulary) -> list[int]:
    """Number of names (synonyms) of each class, in class order."""
    return [len(c.names) for c in vocab.classes]


def flat_synonyms(vocab: Vocabulary) -> list[str]:
    """Every name of every class, class-major: the rows of the text classifier."""
    return [name for c in vocab.classes for name in c.names]


def expand_prompts(
    vocab: Vocabulary, templates: Sequence[str] = DEFAULT_TEMPLATES
) -> tuple[list[str], list[int]]:
    """Expands a vocabulary into the flat list of prompts to encode.

    Order follows the official code: for each class, for each synonym, for each
    template. Consecutive groups of ``len(templates)`` prompts therefore belong
    to one synonym, and consecutive groups of synonyms to one class.

    Args:
        vocab: Vocabulary to expand.
        templates: Format strings with one ``{}`` slot each.

    Returns:
        The prompts (``sum(counts) * len(templates)`` strings) and the number
        of synonyms per class.
    """
    if not templates:
        raise ValueError("expand_prompts needs at least one template, got none")
    prompts = [t.format(name) for name in flat_synonyms(vocab) for t in templates]
    return prompts, synonym_counts(vocab)
