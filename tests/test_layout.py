"""The package's layering: models/ stand apart from training, each family's training has one home, and
checkpoints.py reads shared folders through hub.py, never the other way round (no import cycle)."""
from __future__ import annotations

import ast
from pathlib import Path

import vocabseg

PACKAGE = Path(vocabseg.__file__).parent


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_hub_does_not_import_checkpoints():
    assert not {m for m in _imports(PACKAGE / "hub.py", top_level_only=False) if m.startswith("vocabseg.checkpoints")}
    assert "vocabseg.hub" in _imports(PACKAGE / "checkpoints.py", top_level_only=True)


def test_models_import_no_training_data_or_evaluation_code_when_loaded():
    for path in (PACKAGE / "models").rglob("*.py"):
        wrong = {m for m in _imports(path, top_level_only=True)
                 if m.startswith(("vocabseg.train", "vocabseg.data", "vocabseg.eval"))}
        assert not wrong, f"{path.relative_to(PACKAGE)} imports {sorted(wrong)}"


def test_each_family_trains_from_one_folder():
    cascade = {p.name for p in (PACKAGE / "train" / "cascade_clip").glob("*.py")}
    assert {"data.py", "transforms.py", "loss.py", "pseudo_labels.py"} <= cascade
    ovseg = {p.relative_to(PACKAGE / "train" / "ovseg").as_posix() for p in (PACKAGE / "train" / "ovseg").rglob("*.py")}
    assert {"adapt.py", "assemble.py", "mining/miner.py", "mining/nouns.py"} <= ovseg
    assert not (PACKAGE / "mining").exists()
    model_only = {p.name for p in (PACKAGE / "models" / "cascade_clip").glob("*.py")}
    assert not model_only & {"loss.py", "pseudo_labels.py", "data.py"}
