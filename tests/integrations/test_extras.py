"""The integrations stay optional: the base install pulls none of their tools, the core imports none."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("ray", "fiftyone", "supervision")


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_base_dependencies_name_no_integration_tool_and_extras_do():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = _names(project["dependencies"])
    assert not base & {"ray", "fiftyone", "fiftyone-db", "supervision", "pyarrow", "pymongo"}
    extras = project["optional-dependencies"]
    assert {tool: _names(extras[tool]) for tool in TOOLS} == {"ray": {"ray"}, "fiftyone": {"fiftyone"},
                                                              "supervision": {"supervision"}}
    assert any(all(tool in r for tool in TOOLS) for r in extras["dev"])  # CI runs these tests for real


@pytest.mark.slow  # a fresh interpreter importing torch: ~5-10 s
def test_the_core_imports_no_integration():
    code = ("import sys, vocabseg, vocabseg.cli, vocabseg.outputs, vocabseg.predictor, vocabseg.runs; "
            "vocabseg.cli.build_parser(); "
            f"print([m for m in {TOOLS!r} + ('vocabseg.integrations',) if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    outside = [path for path in (ROOT / "src" / "vocabseg").rglob("*.py") if "integrations" not in path.parts
               and re.search(r"^\s*(import|from) (ray|fiftyone|supervision)\b", path.read_text(), re.M)]
    assert outside == []
