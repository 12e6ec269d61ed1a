"""Export for a fixed vocabulary: torch.export and ONNX (onnxruntime) match the PyTorch model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vocabseg.cli import main
from vocabseg.errors import ConfigError
from vocabseg.export import FixedVocabularyModel, export_program, prepare_image, save_onnx, to_raw_output
from vocabseg.predictor import Predictor
from vocabseg.testing import save_tiny_checkpoint, synthetic_photo

VOCAB = "red disc; blue disc; background [stuff]"
# synthetic_photo() is 96x128; a test size of 64 makes it 64x85, padded to 64x96 as the predictor does,
# so an export of that size sees exactly the predictor's input.
HEIGHT, WIDTH = 64, 96


@pytest.fixture(scope="module", autouse=True)
def text_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VOCABSEG_CACHE", str(tmp_path_factory.mktemp("text")))
        yield


def _predictor(tmp_path_factory, family: str, settings: dict | None = None) -> Predictor:
    path = save_tiny_checkpoint(tmp_path_factory.mktemp(family) / "tiny.pth", family=family, seed=1)
    predictor = Predictor.from_pretrained(str(path), inference=settings)
    predictor.set_vocabulary(VOCAB, progress=False)
    return predictor


@pytest.fixture(scope="module")
def fcclip(tmp_path_factory) -> Predictor:
    return _predictor(tmp_path_factory, "fcclip")


@pytest.fixture(scope="module")
def fcclip_program(fcclip):
    return export_program(fcclip, height=HEIGHT, width=WIDTH)


@pytest.mark.slow  # torch.export of even the tiny model takes ~10 s on two cores
def test_exported_program_matches_the_model_and_the_predictor(fcclip, fcclip_program):
    image, size = prepare_image(fcclip, synthetic_photo(), HEIGHT, WIDTH)
    with torch.no_grad():
        eager = FixedVocabularyModel(fcclip)(image)
    exported = fcclip_program.module()(image)
    assert [tuple(t.shape) for t in exported] == [(1, 10, 4), (1, 10, HEIGHT // 4, WIDTH // 4)]
    for a, b in zip(exported, eager):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    # Through the predictor's own post-processing: the same panoptic result as predict().
    expected = fcclip.predict(synthetic_photo(), task="panoptic")
    got = fcclip.postprocess(to_raw_output(exported, size, (96, 128)), ("panoptic",))
    np.testing.assert_array_equal(got.panoptic, expected.panoptic)
    assert [s.class_name for s in got.segments] == [s.class_name for s in expected.segments]


def _onnx_outputs(path, image: torch.Tensor) -> list[np.ndarray]:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    return session.run(None, {"images": image.numpy()})


@pytest.mark.slow
def test_onnx_matches_pytorch_to_1e_4(fcclip, fcclip_program, tmp_path):
    pytest.importorskip("onnxscript")
    path = save_onnx(fcclip_program, tmp_path / "fcclip.onnx")
    image, _ = prepare_image(fcclip, synthetic_photo(seed=5), HEIGHT, WIDTH)
    with torch.no_grad():
        expected = FixedVocabularyModel(fcclip)(image)
    got = _onnx_outputs(path, image)
    assert len(got) == 2
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-4)


@pytest.mark.slow
def test_onnx_with_external_weights_keeps_the_data_file_beside_it(fcclip, fcclip_program, tmp_path, monkeypatch):
    pytest.importorskip("onnxscript")
    from torch.onnx._internal.exporter import _onnx_program

    monkeypatch.setattr(_onnx_program, "_LARGE_MODEL_THRESHOLD", 0)  # as for a model over ~1.5 GB
    path = save_onnx(fcclip_program, tmp_path / "out" / "big.onnx")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["big.onnx", "big.onnx.data"]
    image, _ = prepare_image(fcclip, synthetic_photo(), HEIGHT, WIDTH)
    with torch.no_grad():
        expected = FixedVocabularyModel(fcclip)(image)
    np.testing.assert_allclose(_onnx_outputs(path, image)[1], expected[1].numpy(), rtol=0, atol=1e-4)


@pytest.mark.slow
def test_ovseg_proposal_branch_exports_to_onnx(tmp_path_factory, tmp_path):
    pytest.importorskip("onnxscript")
    ovseg = _predictor(tmp_path_factory, "ovseg", {"clip_ensemble": False})
    program = export_program(ovseg, height=HEIGHT, width=WIDTH)
    image, _ = prepare_image(ovseg, synthetic_photo(), HEIGHT, WIDTH)
    with torch.no_grad():
        expected = FixedVocabularyModel(ovseg)(image)
    got = _onnx_outputs(save_onnx(program, tmp_path / "ovseg.onnx"), image)
    assert len(got) == 3  # OVSeg also gives the class probabilities its semantic output uses
    # mask_cls is log(p + 1e-8): compare probabilities, where float rounding is bounded
    np.testing.assert_allclose(np.exp(got[0]), expected[0].exp().numpy(), rtol=0, atol=1e-4)
    for a, b in zip(got[1:], expected[1:]):
        np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-4)


def test_ovseg_region_branch_is_refused_with_the_setting_to_change(tmp_path_factory):
    ovseg = _predictor(tmp_path_factory, "ovseg")
    with pytest.raises(ConfigError, match="clip_ensemble=false"):
        export_program(ovseg, height=HEIGHT, width=WIDTH)


def test_bad_sizes_are_one_line_errors(fcclip):
    with pytest.raises(ConfigError, match="multiples of 32"):
        export_program(fcclip, height=70, width=96)
    with pytest.raises(ConfigError, match="larger than the exported input"):
        prepare_image(fcclip, synthetic_photo(), 32, 32)


def test_size_argument_is_width_by_height_or_one_side(capsys):
    from vocabseg.cli.export import image_size

    assert image_size("96x64") == (64, 96) and image_size("96") == (96, 96)
    for bad in ("96x", "x64", "0x64", "96x64x3", "big"):
        with pytest.raises(SystemExit):
            main(["export", "--model", "m", "--vocab", VOCAB, "--size", bad, "--output", "m.pt2"])
        assert "argument --size" in capsys.readouterr().err


@pytest.mark.slow
def test_export_command_writes_the_program_and_its_description(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pth")
    output = tmp_path / "tiny.pt2"
    assert main(["-q", "export", "--model", str(checkpoint), "--vocab", VOCAB, "--size", f"{WIDTH}x{HEIGHT}",
                 "--output", str(output)]) == 0
    program = torch.export.load(output)
    image = torch.zeros(1, 3, HEIGHT, WIDTH)
    assert tuple(program.module()(image)[0].shape) == (1, 10, 4)
    described = json.loads(output.with_suffix(".json").read_text())
    assert described["input"]["shape"] == [1, 3, HEIGHT, WIDTH] and described["mask_stride"] == 4
    assert [c["name"] for c in described["classes"]] == ["red disc", "blue disc", "background"]
    assert main(["export", "--model", str(checkpoint), "--vocab", VOCAB, "--size", "96x64",
                 "--output", str(tmp_path / "x.txt")]) == 2


def test_an_earlier_export_is_not_replaced_without_overwrite(tmp_path, capsys, monkeypatch):
    def refuse(args):
        raise AssertionError("the model must not load")

    monkeypatch.setattr("vocabseg.cli.export.load_predictor", refuse)
    (tmp_path / "m.json").write_text("{}")  # the classes of an earlier m.onnx
    assert main(["export", "--model", "m", "--vocab", VOCAB, "--size", "96x64",
                 "--output", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--output {tmp_path / 'm.json'} exists" in err[0] and "--overwrite" in err[0]
    assert (tmp_path / "m.json").read_text() == "{}"
