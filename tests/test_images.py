"""Tests for vocabseg.images: PIL's decompression-bomb guard gives one-line errors, not warnings."""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from PIL import Image

from vocabseg.errors import ImageError
from vocabseg.images import check_readable, expand_inputs, load_image


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


def _tree(root, files):
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    return root


def test_a_folder_with_images_only_in_subfolders_says_so_and_offers_recursive(tmp_path):
    nested = _tree(tmp_path / "nested", ["day1/a.jpg", "day2/b.png"])
    with pytest.raises(ImageError, match="images in subfolders of .*nested are skipped: add --recursive"):
        expand_inputs([str(nested)])


def test_skipped_subfolders_are_said_when_the_top_level_has_images(tmp_path, caplog):
    folder = _tree(tmp_path / "photos", ["top.jpg", "day1/a.jpg"])
    with caplog.at_level(logging.INFO, logger="vocabseg"):
        assert list(expand_inputs([str(folder)]).values()) == ["top"]
    assert any("subfolders are skipped (--recursive includes them)" in r.getMessage() for r in caplog.records)


def test_recursive_names_outputs_by_relative_path_so_equal_names_do_not_collide(tmp_path):
    folder = _tree(tmp_path / "photos", ["a.jpg", "day1/a.jpg", "day2/a.JPG", "day2/deep/b.png", ".cache/c.jpg",
                                         "out/old_overlay.png"])
    (folder / "notes.txt").write_text("not an image")
    names = expand_inputs([str(folder)], recursive=True, exclude=folder / "out")  # the output inside the input
    assert sorted(names.values()) == ["a", "day1/a", "day2/a", "day2/deep/b"]
    assert names[folder / "day2" / "deep" / "b.png"] == "day2/deep/b"
    with pytest.raises(ImageError, match="would write the same output files"):
        expand_inputs([str(folder), str(folder / "day1" / "a.jpg")], recursive=True)  # "a" twice
