"""The font of overlay labels: a CJK-capable one this machine has, else the DejaVu Sans vocabseg ships.

Looked up in order, the first found wins:

1. A font that draws CJK as well as Latin, Greek and Cyrillic: what fontconfig lists for Chinese
   (``fc-list :lang=zh``), else a known file in the usual font folders (Noto Sans CJK,
   WenQuanYi; PingFang or Microsoft YaHei on macOS and Windows). On Debian:
   ``apt-get install fonts-noto-cjk`` (or ``fonts-wqy-microhei``).
2. DejaVu Sans 2.37 inside vocabseg (``assets/DejaVuSans.ttf``, 0.76 MB, Bitstream Vera license
   beside it): Latin, Greek, Cyrillic; CJK names come out as boxes.
3. Pillow's default font (only if the file above is missing): Latin only.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from PIL import ImageFont

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont | ImageFont.TransposedFont

# Folders fonts are installed in (Linux system and user, macOS, Windows).
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts",
             "/System/Library/Fonts", "/Library/Fonts", "C:/Windows/Fonts")
# CJK-capable fonts with Latin, Greek and Cyrillic too, by file name, best first.
CJK_FILES = ("NotoSansCJK-Regular.ttc", "NotoSansCJKsc-Regular.otf", "wqy-microhei.ttc", "wqy-zenhei.ttc",
             "PingFang.ttc", "Hiragino Sans GB.ttc", "msyh.ttc")
BUNDLED = Path(__file__).parent / "assets" / "DejaVuSans.ttf"


@functools.cache
def font_path() -> str | None:
    """The file of the label font (None: Pillow's built-in default)."""
    return _fontconfig_cjk() or _find(CJK_FILES) or (str(BUNDLED) if BUNDLED.is_file() else None)


def _fontconfig_cjk() -> str | None:
    """A regular-weight font fontconfig says covers Chinese, preferring the known good ones."""
    if shutil.which("fc-list") is None:
        return None
    try:
        listed = subprocess.run(["fc-list", "-f", "%{file}\n", ":lang=zh"], capture_output=True, text=True,
                                timeout=10, check=False).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return None
    files = [f for f in listed if f.endswith((".ttf", ".ttc", ".otf")) and "bold" not in Path(f).name.lower()]
    rank = {name: i for i, name in enumerate(CJK_FILES)}
    return min(files, key=lambda f: rank.get(Path(f).name, len(rank)), default=None)


def _find(names: tuple[str, ...]) -> str | None:
    """The first of ``names`` (in their order) installed in the font folders."""
    installed = _installed(FONT_DIRS)
    return next((installed[name] for name in names if name in installed), None)


@functools.cache
def _installed(folders: tuple[str, ...]) -> dict[str, str]:
    """File name -> path of every file under ``folders`` (one walk; the first folder listing a name wins)."""
    found: dict[str, str] = {}
    for folder in map(Path, map(os.path.expanduser, folders)):
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                found.setdefault(path.name, str(path))
    return found


def font_name() -> str:
    """The family name of the label font, e.g. "DejaVu Sans" (Pillow's default: "Aileron"; its bitmap: "default")."""
    font = label_font(12)
    return (font.getname()[0] or "default") if isinstance(font, ImageFont.FreeTypeFont) else "default"


@functools.lru_cache(maxsize=16)
def label_font(size: int) -> Font:
    """The label font at ``size`` pixels (cached: overlays of one run share a few sizes)."""
    path = font_path()
    return ImageFont.load_default(size) if path is None else ImageFont.truetype(path, size)
