"""torch.hub entry points: ``torch.hub.load("<org>/vocabseg", "fcclip_rn50_coco")`` or, on a checkout,
``torch.hub.load("path/to/vocabseg", "fcclip_rn50_coco", source="local", device="cpu")``.

Every entry point returns a :class:`vocabseg.Predictor` (set a vocabulary, then predict). One entry
per model of the zoo (``vocabseg models``), plus ``from_pretrained`` for checkpoint files, shared
folders and ``hf-hub:org/name`` names. Keyword arguments go to ``Predictor.from_pretrained``
(``weights``, ``clip_weights``, ``device``, ``inference``).
"""
from __future__ import annotations

import sys
from pathlib import Path

dependencies = ["torch", "torchvision", "open_clip", "timm", "numpy", "PIL", "scipy", "pycocotools", "yaml",
                "safetensors", "huggingface_hub"]

# torch.hub puts the repository root on sys.path; the package lives in src/ (not installed on a
# fresh clone that torch.hub downloaded).
if "vocabseg" not in sys.modules:
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from vocabseg.predictor import Predictor  # noqa: E402
from vocabseg.zoo import list_models  # noqa: E402


def from_pretrained(name_or_path: str, **kwargs) -> Predictor:
    """A predictor of a zoo name, checkpoint file, shared folder or ``hf-hub:org/name[@revision]``."""
    return Predictor.from_pretrained(name_or_path, **kwargs)


def _zoo_entry(name: str):
    def entry(**kwargs) -> Predictor:
        return Predictor.from_pretrained(name, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"The {name} predictor (official weights downloaded once, or ``weights=PATH``)."
    return entry


# The zoo is the one list of models: its names become entry points here, so a new family's
# variants are loadable through torch.hub without editing this file.
globals().update({name: _zoo_entry(name) for name in list_models()})
