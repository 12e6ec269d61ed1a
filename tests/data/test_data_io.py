"""Loaders: dtypes, modes and id encodings of each file format."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vocabseg.data import (
    IGNORE_LABEL,
    DatasetError,
    Segment,
    SemanticLabel,
    id_to_rgb,
    load_image,
    load_panoptic,
    load_semantic,
    panoptic_to_semantic,
    read_label_map,
    rgb_to_id,
)


def test_rgb_id_round_trip() -> None:
    ids = np.array([[0, 1, 255], [256, 65535, 2**24 - 1]], dtype=np.int64)
    rgb = id_to_rgb(ids)
    assert rgb.dtype == np.uint8 and rgb[1, 0].tolist() == [0, 1, 0]
    np.testing.assert_array_equal(rgb_to_id(rgb), ids)


def test_load_image_is_rgb_uint8_with_exif_rotation(tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((4, 6), 7, np.uint8)).save(grey)
    assert load_image(grey).shape == (4, 6, 3) and load_image(grey).dtype == np.uint8
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    Image.new("RGB", (6, 4)).save(rotated, exif=exif)
    assert load_image(rotated).shape == (6, 4, 3)


def test_load_panoptic_decodes_ids(tmp_path: Path) -> None:
    ids = np.array([[0, 1000], [7002, 300000]], dtype=np.int64)
    Image.fromarray(id_to_rgb(ids)).save(tmp_path / "p.png")
    out = load_panoptic(tmp_path / "p.png")
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, ids)


def test_load_panoptic_rejects_single_channel(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "p.png")
    with pytest.raises(DatasetError, match="has mode L, expected RGB"):
        load_panoptic(tmp_path / "p.png")


def test_read_label_map_dtypes(tmp_path: Path) -> None:
    palette = Image.fromarray(np.array([[0, 3]], np.uint8), mode="P")
    palette.putpalette([255, 0, 0] * 256)  # colours must not leak into the labels
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_label_map(tmp_path / "p.png"), [[0, 3]])
    Image.fromarray(np.array([[846, 65535]], np.uint16)).save(tmp_path / "l.tif", format="TIFF")
    tif = read_label_map(tmp_path / "l.tif")
    assert tif.dtype == np.uint16 and tif.tolist() == [[846, 65535]]
    Image.new("RGB", (2, 2)).save(tmp_path / "c.png")
    with pytest.raises(DatasetError, match="colour visualisation"):
        read_label_map(tmp_path / "c.png")


def test_load_semantic_ignore_and_id_map(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 5, 255]], np.uint8)).save(tmp_path / "s.png")
    plain = load_semantic(SemanticLabel(tmp_path / "s.png", ignore_value=255))
    assert plain.dtype == np.int64 and plain.tolist() == [[0, 5, IGNORE_LABEL]]
    lut = tuple([-1] * 5 + [2] + [-1] * 250)
    mapped = load_semantic(SemanticLabel(tmp_path / "s.png", ignore_value=255, id_map=lut))
    assert mapped.tolist() == [[IGNORE_LABEL, 2, IGNORE_LABEL]]
    assert load_semantic(tmp_path / "s.png").tolist() == [[0, 5, IGNORE_LABEL]]  # a path: 8-bit ignores 255
    Image.fromarray(np.array([[255, 65535]], np.uint16)).save(tmp_path / "s.tif", format="TIFF")
    assert load_semantic(tmp_path / "s.tif").tolist() == [[255, IGNORE_LABEL]]  # 16-bit ignores 65535
    with pytest.raises(DatasetError, match="holds value 255, beyond the 6 values"):
        load_semantic(SemanticLabel(tmp_path / "s.png", ignore_value=0, id_map=lut[:6]))


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_image(tmp_path / "nope.jpg")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="not a readable image"):
        load_panoptic(tmp_path / "bad.png")


def test_panoptic_to_semantic() -> None:
    ids = np.array([[0, 1], [2, 9]])
    segments = [Segment(1, 4, True, False, 1), Segment(2, 0, False, True, 1)]
    assert panoptic_to_semantic(ids, segments).tolist() == [[IGNORE_LABEL, 4], [0, IGNORE_LABEL]]
