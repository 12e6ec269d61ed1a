"""Real example photos for the demo: the ones scikit-image ships (no download), saved as PNG once."""
from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image

from vocabseg.fileio import atomic_write

logger = logging.getLogger(__name__)

# scikit-image's bundled photos (public domain or CC0 per its data README) and words to try on them.
PHOTOS = {
    "astronaut": "person; flag; rocket; space suit",
    "coffee": "cup; saucer; spoon; table [stuff]",
    "chelsea": "cat; wall [stuff]; floor [stuff]",
    "rocket": "rocket; tower; tree; sky [stuff]",
}


def example_photos(folder: str | Path) -> list[Path]:
    """PNG paths of the photos under ``folder`` (written on first use); none without scikit-image."""
    try:
        from skimage import data
    except ImportError:
        logger.info("no example photos: scikit-image is not installed (pip install 'vocabseg[demo]')")
        return []
    paths = []
    for name in PHOTOS:
        path = Path(folder) / f"{name}.png"
        if not path.exists():
            _save_png(path, Image.fromarray(getattr(data, name)()))  # from [H, W, 3] uint8
        paths.append(path)
    return paths


def _save_png(path: Path, photo: Image.Image) -> None:
    atomic_write(path, lambda p: photo.save(p, format="PNG"))
