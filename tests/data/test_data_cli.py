"""`vocabseg data prepare | check | list` on tiny datasets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_datasets import write_ade20k, write_ade20k_raw

from vocabseg.cli import main
from vocabseg.data import list_datasets, list_preparers

ADE = "ADEChallengeData2016"


def test_list_shows_every_split_and_family(capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in list_datasets())
    assert all(family in out for family in list_preparers())
    assert "ade20k_panoptic_val" in out and "panoptic,semantic,instance" in out


def test_prepare_then_check_is_ok(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_ade20k_raw(tmp_path)
    assert main(["data", "prepare", "ade20k_150", "--root", str(tmp_path), "--no-progress"]) == 0
    assert "ade20k" in capsys.readouterr().out
    assert (tmp_path / ADE / "ade20k_panoptic_val.json").is_file()
    assert main(["data", "check", "ade20k_150", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "ok"


def test_check_reports_a_broken_file_with_exit_code_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_ade20k(tmp_path)
    broken = tmp_path / ADE / "annotations_detectron2" / "validation" / "ADE_val_00000001.png"
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(broken)  # a colour image, not class ids
    assert main(["data", "check", "ade20k_sem_seg_val", "--root", str(tmp_path), "--all"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and str(broken) in lines[0] and "mode RGB" in lines[0]
    assert "vocabseg data prepare ade20k_150" in lines[0]  # the fix
    assert "1 problem(s)" in captured.err


def test_prepare_without_raw_release_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "prepare", "ade20k_150", "--root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "nowhere") in err


def test_unknown_dataset_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "check", "ade21k", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown dataset 'ade21k'" in err
