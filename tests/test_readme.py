"""What the README promises a newcomer holds: no "30 seconds", the cost of a first install, the CPU-only
wheels, and the command it names for Cascade-CLIP's share links prints them."""
from __future__ import annotations

import re
from pathlib import Path

from vocabseg.cli import main
from vocabseg.zoo import get_variant

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def test_quick_start_says_what_a_first_run_costs():
    heading = next(line for line in README.splitlines() if line.startswith("## Quick start"))
    assert "second" not in heading  # the install alone takes minutes
    section = README.split(heading, 1)[1].split("\n## ", 1)[0]
    assert "6.6 GB" in section and "7 minutes" in section and "1.5 GB" in section
    assert "--index-url https://download.pytorch.org/whl/cpu" in section


def test_the_install_note_offers_the_cpu_only_wheels():
    setup = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    assert "--index-url https://download.pytorch.org/whl/cpu" in setup and "6.6 GB" in setup


def test_the_command_named_for_the_share_links_prints_them(tmp_path, monkeypatch, capsys):
    claim = re.search(r"`(vocabseg \w+)[^`]*` prints the share link", README)
    assert claim is not None, "the README names the command that prints Cascade-CLIP's share links"
    assert "`vocabseg models` lists the share links" not in README
    monkeypatch.setenv("VOCABSEG_HOME", str(tmp_path))  # nothing cached
    name = "cascade_clip_vitb16_voc20_inductive"
    main([*claim.group(1).split()[1:], name])
    printed = capsys.readouterr()
    spec = get_variant(name).weights
    assert spec.url in printed.out + printed.err and "access code" in printed.out + printed.err
