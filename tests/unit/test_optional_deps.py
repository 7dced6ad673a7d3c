"""The optional extras (interp/extras.py) are optional: with reportlab, pypdf, transformer-lens,
nnsight and scikit-learn unimportable (a GPU machine with only torch, transformers, peft and the
scientific stack), every module but the PDF writers imports, `interp run` of a config that asks
for a report finishes with one warning, `interp report` stops with one line, and an analysis
that needs an absent backend is skipped with one line.

Each check runs in a subprocess that installs an import blocker first, so this process's
sys.modules is untouched. A module-level `import reportlab` (or of any blocked package) added to
a module that `interp run` imports makes the run subprocess fail here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import tiny_subliminal_config, write_config

BLOCKED = ("reportlab", "pypdf", "transformer_lens", "nnsight", "sklearn")
# the only modules allowed to need an extra to import: the PDF writers (interp.report.* but its
# matplotlib figures), reached only through `interp report`, a config's [report] and a sweep's
# PDF, each of which checks for reportlab first
PDF_WRITERS = "interp.report."
NOT_PDF = ("interp.report.figures",)

DRIVER = f'''
import importlib, importlib.abc, pkgutil, sys

BLOCKED = {BLOCKED!r}
PDF_WRITERS, NOT_PDF = {PDF_WRITERS!r}, {NOT_PDF!r}
early = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
assert not early, f"imported before the blocker: {{early}}"


class Blocker(importlib.abc.MetaPathFinder):
    """What an absent package looks like to `import`: ModuleNotFoundError."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, Blocker())
# and to a probe: `importlib.util.find_spec` answers None for a name held as None in sys.modules
# (transformers asks it whether scikit-learn is there), where the finder alone would raise
for name in BLOCKED:
    sys.modules[name] = None
if sys.argv[1] == "import-all":  # every module of the package, but the PDF writers
    import interp

    names = [m.name for m in pkgutil.walk_packages(interp.__path__, "interp.")
             if not m.name.startswith(PDF_WRITERS) or m.name in NOT_PDF]
    for name in names:
        importlib.import_module(name)
    assert "interp.cli" in names and "interp.analysis.run" in names, names
    print(f"imported {{len(names)}} modules", file=sys.stderr)
from interp.cli import main

code = main(sys.argv[2:])
leaked = sorted(m for m, mod in sys.modules.items() if m.partition(".")[0] in BLOCKED and mod is not None)
assert not leaked, f"blocked modules were imported: {{leaked}}"
raise SystemExit(code)
'''


def _interp(tmp_path: Path, *argv: str, import_all: bool = False) -> subprocess.CompletedProcess:
    driver = tmp_path / "blocked_interp.py"
    driver.write_text(DRIVER)
    env = os.environ | {"HF_HUB_OFFLINE": "1"}  # INTERP_THREADS (one per xdist worker) carries over
    return subprocess.run([sys.executable, str(driver), "import-all" if import_all else "-", *argv],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip


def _lines(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def test_run_without_extras_skips_the_report_and_report_says_what_is_missing(tmp_path):
    cfg = tiny_subliminal_config() | {"report": {"enabled": True}}
    path = write_config(tmp_path, cfg, name="noextras")
    out = _interp(tmp_path, "run", str(path), "--out-dir", str(tmp_path / "runs"), import_all=True)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    run = tmp_path / "runs" / "noextras"
    assert json.loads((run / "summary.json").read_text())["experiment"] == "subliminal"
    warned = _lines(out.stderr, "report skipped")
    assert len(warned) == 1, log[-4000:]
    assert "reportlab is not installed (pip install 'interp[report]')" in warned[0]
    assert not list(tmp_path.rglob("*.pdf"))

    rep = _interp(tmp_path, "report", str(run))
    assert rep.returncode == 2, rep.stdout + rep.stderr
    assert rep.stderr.strip().splitlines() == [
        "interp: error: reportlab is not installed (pip install 'interp[report]'); `interp report` needs it"
    ], rep.stderr

    # the activation sections need the configured backend (transformer-lens by default): skipped,
    # one line; nothing is recorded
    ana = _interp(tmp_path, "analyze", str(run), "--only", "trait_direction,probes,steering")
    assert ana.returncode == 0, (ana.stdout + ana.stderr)[-4000:]
    skipped = _lines(ana.stderr, "skipped")
    assert skipped == _lines(ana.stderr, "analysis: trait_direction, probes, steering skipped: transformer-lens "
                                          "is not installed (pip install 'interp[activations]')"), ana.stderr  # fmt: skip
    assert len(skipped) == 1, ana.stderr
    res = json.loads((run / "analysis.json").read_text())
    for name in ("trait_direction", "probes", "steering"):
        assert name not in res and "transformer-lens is not installed" in res["missing"][name]
    assert not (run / "stages" / "record").exists() and not list(run.rglob("record*"))
