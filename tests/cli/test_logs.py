"""The command line's messages: vocabseg's own once, whatever a dependency did to the root logger; other
libraries' warnings summed up in one line; -q/-v before or after the subcommand."""
from __future__ import annotations

import logging
import sys
import warnings

import pytest
from PIL import Image

from vocabseg.cli import build_parser, main
from vocabseg.cli.logs import cli_logging, third_party_warnings
from vocabseg.testing import save_tiny_checkpoint, synthetic_photo


class _CurrentStderr(logging.StreamHandler):
    @property
    def stream(self):
        return sys.stderr  # capsys swaps it between the fixture's setup and the test

    @stream.setter
    def stream(self, value) -> None:
        pass


@pytest.fixture()
def root_handler():
    """What open_clip's ``logging.info`` does to a process whose root logger has no handler:
    ``basicConfig()``, a stderr handler in the ``LEVEL:name:message`` format (added by hand: pytest's
    own handlers make basicConfig a no-op here)."""
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


@pytest.fixture()
def folder_with_a_bad_image(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(synthetic_photo(60, 80)).save(folder / "street.png")
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def test_messages_print_once_when_a_dependency_configured_the_root_logger(
        root_handler, folder_with_a_bad_image, tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.setenv("VOCABSEG_CACHE", str(tmp_path / "text"))
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pth", seed=0, min_size=64, max_size=128)
    assert main(["predict", str(folder_with_a_bad_image), "--model", str(checkpoint), "--vocab", "cat",
                 "--skip-errors", "--output", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err  # the progress bar's carriage returns share its lines
    assert err.count(f"skipping {folder_with_a_bad_image / 'broken.png'}: ") == 1, err
    assert err.count("skipped 1 image(s)") == 1, err
    assert "WARNING:vocabseg" not in err, err
    assert logging.getLogger("vocabseg").propagate  # restored after the command: a notebook's logging sees them


def test_other_libraries_warnings_become_one_line(root_handler, capsys, monkeypatch):
    monkeypatch.delenv("VOCABSEG_DEBUG", raising=False)
    with cli_logging(logging.INFO), third_party_warnings("export to onnx"):
        for i in range(36):
            logging.getLogger("onnxscript.optimizer").warning("Skipping constant folding %d", i)
        warnings.warn("a tracer note", UserWarning, stacklevel=1)
        logging.getLogger("vocabseg.export").warning("our own note")
    err = capsys.readouterr().err.splitlines()
    assert not [line for line in err if "onnxscript" in line and "Skipping" in line], err
    summary = [line for line in err if "warning(s) of other libraries hidden" in line]
    assert len(summary) == 1 and "37 warning(s)" in summary[0] and "36 from onnxscript" in summary[0], err
    assert "VOCABSEG_DEBUG=1" in summary[0]
    assert any("our own note" in line for line in err)
    assert root_handler in logging.getLogger().handlers  # the root's handlers are back


def test_with_debug_every_warning_prints(root_handler, capsys, monkeypatch):
    monkeypatch.setenv("VOCABSEG_DEBUG", "1")
    with third_party_warnings("export to onnx"):
        for i in range(3):
            logging.getLogger("onnxscript.optimizer").warning("Skipping constant folding %d", i)
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "Skipping constant folding" in line] == [
        f"WARNING:onnxscript.optimizer:Skipping constant folding {i}" for i in range(3)]


@pytest.mark.parametrize(("argv", "quiet", "verbose"), [
    (["-q", "models"], True, False),
    (["models", "-q"], True, False),
    (["models", "--quiet"], True, False),
    (["models", "-v"], False, True),
    (["-v", "models"], False, True),
    (["models"], False, False),
    (["data", "check", "ade20k_150", "--root", "x", "-q"], True, False),  # nested subcommands too
])
def test_quiet_and_verbose_before_or_after_the_subcommand(argv, quiet, verbose):
    args = build_parser().parse_args(argv)
    assert (args.quiet, args.verbose) == (quiet, verbose)


def test_quiet_after_the_subcommand_hides_the_progress_notes(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.setenv("VOCABSEG_CACHE", str(tmp_path / "text"))
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pth", seed=0, min_size=64, max_size=128)
    photo = tmp_path / "street.png"
    Image.fromarray(synthetic_photo(60, 80)).save(photo)
    args = ["predict", str(photo), "--model", str(checkpoint), "--vocab", "cat", "--output", str(tmp_path / "o")]
    assert main([*args, "-q"]) == 0
    assert "img/s" not in capsys.readouterr().err  # -q: no progress bar either
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "-q"]) == 0  # a rerun: "skipping 1 image(s) already done" is a progress note
    assert "skipping" not in capsys.readouterr().err
    assert main(args) == 0
    assert "skipping 1 image(s)" in capsys.readouterr().err


@pytest.mark.slow  # torch.export + the ONNX exporter: ~25 s on two cores
def test_onnx_export_prints_one_summary_instead_of_the_exporters_warnings(root_handler, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxscript")
    monkeypatch.delenv("VOCABSEG_DEBUG", raising=False)
    monkeypatch.setenv("VOCABSEG_CACHE", str(tmp_path / "text"))
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pth", kind="resnet", seed=2, min_size=64, max_size=128)
    assert main(["export", "--model", str(checkpoint), "--vocab", "cat; dog", "--size", "64x64",
                 "--output", str(tmp_path / "tiny.onnx")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert not [line for line in err if line.startswith("WARNING:") or "constant folding" in line], err
    summaries = [line for line in err if "of other libraries hidden" in line]
    assert len(summaries) == 1 and summaries[0].startswith("export to onnx: "), err
