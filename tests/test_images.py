"""Tests for vocabseg.images: PIL's decompression-bomb guard gives one-line errors, not warnings."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from vocabseg.errors import ImageError
from vocabseg.images import check_readable, load_image


@pytest.fixture()
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(path)
    return path


def test_an_image_over_pils_bomb_limit_is_a_one_line_error(photo, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40 * 50 // 3)  # the error fires above twice the limit
    for read in (load_image, lambda path: check_readable([path])):
        with pytest.raises(ImageError, match=r"larger than PIL's decompression-bomb limit .*: resize it") as error:
            read(photo)
        assert "\n" not in str(error.value)


def test_pils_bomb_warning_is_silenced(photo, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40 * 50 - 1)  # over the limit, under twice it: a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(photo).shape == (40, 50, 3)
        check_readable([photo])
