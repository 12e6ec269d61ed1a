"""The font of overlay labels: one that draws class names in Latin, Cyrillic, Greek and CJK scripts.

Looked up in order, the first installed one wins:

1. WenQuanYi Micro Hei from ``paperang-p2-fonts-cjk`` (a dependency; the font is Apache-2.0 or
   GPLv3 with a font exception): Latin, Greek, Cyrillic, CJK ideographs, kana and Hangul.
2. DejaVu Sans shipped inside matplotlib (the ``demo`` extra): Latin, Greek, Cyrillic; no CJK.
3. Pillow's default font: Latin only; other scripts come out as boxes.
"""
from __future__ import annotations

import functools
import io
from importlib import resources
from pathlib import Path

from PIL import ImageFont

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont | ImageFont.TransposedFont

# (package, file inside it): the fonts above, best first
FONT_RESOURCES = (
    ("paperang_p2_fonts_cjk", "fonts/wqy-microhei.ttc"),
    ("matplotlib", "mpl-data/fonts/ttf/DejaVuSans.ttf"),
)


@functools.cache
def _font_source() -> str | bytes | None:
    """A path (or the bytes, for a zipped package) of the first installed font; None if there is none."""
    for package, name in FONT_RESOURCES:
        try:
            resource = resources.files(package).joinpath(name)
        except ModuleNotFoundError:
            continue
        if isinstance(resource, Path):
            if resource.is_file():
                return str(resource)
        elif resource.is_file():
            return resource.read_bytes()
    return None


def font_name() -> str:
    """The family name of the label font, e.g. "WenQuanYi Micro Hei" ("default": Pillow's bitmap font)."""
    font = label_font(12)
    return (font.getname()[0] or "default") if isinstance(font, ImageFont.FreeTypeFont) else "default"


@functools.lru_cache(maxsize=16)
def label_font(size: int) -> Font:
    """The label font at ``size`` pixels (cached: overlays of one run share a few sizes)."""
    source = _font_source()
    if source is None:
        return ImageFont.load_default(size)
    return ImageFont.truetype(io.BytesIO(source) if isinstance(source, bytes) else source, size)
