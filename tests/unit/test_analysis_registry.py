"""The analyses' registry (issue 33): each analysis is one unit in one module, listed once;
the driver, the report and the hypothesis scripts find them through it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from interp import registry
from interp.analysis.unit import Analysis
from interp.registry import ANALYSES, ANALYSIS_SECTIONS, load_analysis

ROOT = Path(__file__).resolve().parents[2]


def _hypothesis(script: Path) -> str | None:
    """The HYPOTHESIS constant a script assigns."""
    for node in ast.parse(script.read_text()).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["HYPOTHESIS"]:
            return ast.literal_eval(node.value)
    return None


def test_every_registered_analysis_is_one_unit_in_its_own_module():
    units = [load_analysis(n) for n in ANALYSIS_SECTIONS]
    assert all(isinstance(u, Analysis) for u in units)
    assert [u.name for u in units] == list(ANALYSIS_SECTIONS)
    assert len(set(ANALYSES.values())) == len(ANALYSES)  # one module per analysis
    assert len({u.title for u in units}) == len(units)
    assert all(u.render is not None and u.needs for u in units)


def test_a_name_registered_twice_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        registry._unique((("probes", "interp.analysis.probes"), ("probes", "interp.analysis.steering")))


def test_a_module_declaring_another_name_is_refused(monkeypatch):
    monkeypatch.setitem(ANALYSES, "probes", "interp.analysis.steering")
    with pytest.raises(ValueError, match="declares the analysis 'steering'"):
        load_analysis("probes")


def test_each_hypothesis_script_of_an_analysis_is_declared_by_it_and_names_its_claim():
    declared = {u.script: u for u in map(load_analysis, ANALYSIS_SECTIONS) if u.script}
    for script in sorted((ROOT / "analyses").glob("*.py")):
        name = _hypothesis(script)
        rel = f"analyses/{script.name}"
        if name in ANALYSES:  # a script about an analysis: that analysis declares it
            assert rel in declared and declared[rel].name == name, rel
    for rel, unit in declared.items():
        assert _hypothesis(ROOT / rel) == unit.name, rel
        claim = unit.claim()
        assert claim and not claim.startswith("Hypothesis") and len(claim) > 20, (rel, claim)
    assert len(declared) == 10
