"""PDF reports from real (tiny) runs: the numbers in the text are the summary's, page 1 gives
each contrast's numbers and verdict, provenance is an appendix at the end, every figure is
captioned by id, missing analyses are said in words, and the text is extractable."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from pypdf import PdfReader
from report_runs import matrix_run, real_runs

from interp.fmt import fmt, fmt_ci, fmt_est
from interp.registry import FIGURE_IDS
from interp.report.build import build_report, default_report_path, report_main
from interp.report.verdict import NULL, TRANSMITS, verdict

# the data-side analyses (off in the tiny runs: the report says why each is absent)
DATA_SECTIONS = ("data_controls", "divergence", "detection", "incontext", "first_order")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    return real_runs(tmp_path_factory)


def pdf_text(path: Path, page: int | None = None) -> str:
    """All pages' text (or one page's), whitespace collapsed (table cells and wrapped lines rejoin)."""
    pages = PdfReader(str(path)).pages
    raw = "\n".join(p.extract_text() for p in (pages if page is None else [pages[page]]))
    return re.sub(r"\s+", " ", raw)


@pytest.fixture(scope="module")
def sub_report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "sub.pdf"
    info = build_report([runs["subliminal"]], out)
    return info, pdf_text(out)


@pytest.fixture(scope="module")
def matrix_report(runs, tmp_path_factory):
    """(summary, analysis, page-1 text, full text) of a five-target trait-matrix run."""
    run = matrix_run(runs["subliminal"], runs["subliminal"].parent / "tinysub-matrix")
    out = tmp_path_factory.mktemp("rep") / "matrix.pdf"
    build_report([run], out)
    summary = json.loads((run / "summary.json").read_text())
    analysis = json.loads((run / "analysis.json").read_text())
    return summary, analysis, pdf_text(out, page=0), pdf_text(out)


@pytest.fixture(scope="module")
def mlp_report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "mlp.pdf"
    info = build_report([runs["mlp"]], out)
    return info, pdf_text(out)


def test_fmt_is_the_one_number_format():
    assert fmt(None) == "n/a" and fmt(0.0) == "0" and fmt(-0.0) == "0" and fmt(3) == "3"
    assert fmt(0.24834213574991362) == "0.2483" and fmt(float("nan")) == "nan"
    assert fmt_est({"mean": 0.5, "lo": 0.25, "hi": 0.75}) == "0.5 [0.25, 0.75]"
    assert fmt_est({"mean": None}) == "n/a"


def test_subliminal_headline_numbers_equal_summary(runs, sub_report):
    info, text = sub_report
    summary = json.loads((runs["subliminal"] / "summary.json").read_text())
    assert info.pages >= 2 and info.runs == ["tinysub"]
    for label, m in summary["models"].items():
        row = re.search(re.escape(label) + r" (\S+) (yes|no) (.+?\]) (.+?\]) (\d+)", text)
        assert row, f"no headline row for {label}"
        assert row.group(3) == fmt_est(m["trait_rate"]) and row.group(4) == fmt_est(m["logprob"])
        assert row.group(1) == m["model"]
    for name, s in summary["students"].items():
        per_seed = ", ".join(fmt(v) for v in s["logprob"]["per_seed"])
        cells = f"{fmt_est(s['trait_rate'])} {fmt_est(s['logprob'])} {per_seed}"
        assert f"{name} {s['model']} {s['data']} {s['logprob']['n']} {cells}" in text
    for which, f in summary["filter"].items():
        kept = f"{fmt(f['kept'])} of {fmt(f['total'])} completions passed"
        assert f"Filter ({which} data): {kept} (pass rate {fmt(f['pass_rate'])})" in text
        for reason, count in f["rejected"].items():
            assert f"{reason} {fmt(count)}" in text
        assert f"{fmt(f['dataset_shape']['mean_numbers'])} numbers and" in text
    assert "decoding constraint 'list'" in text  # the tiny config's data.constraint


def test_subliminal_figures_and_analyses(runs, sub_report):
    info, text = sub_report
    assert info.figure_ids == ["trait_scores", "update_alignment", "gradient_alignment",
                               "trait_direction", "probes"]  # fmt: skip
    for f in info.figures:
        assert f"Figure {f.number} ({f.id}): Run {f.run}." in text
    # the data-side sections are off in this run: stated with the reason, nothing else is missing
    assert {s[1] for s in info.skipped} == set(DATA_SECTIONS) | {"trajectories"}
    an = json.loads((runs["subliminal"] / "analysis.json").read_text())
    st = an["steering"]
    assert fmt_est(st["sufficiency"]["diff"]) in text and fmt_est(st["necessity"]["diff"]) in text
    assert (
        "Detection: not computed for this run (reason: off; set [analysis] detection = true)"
        in text
    )
    assert "Data controls: not computed for this run (reason: gamma needs >= 2 targets" in text


def test_methods_and_provenance_from_artifacts(runs, sub_report):
    _, text = sub_report
    summary = json.loads((runs["subliminal"] / "summary.json").read_text())
    prov = summary["provenance"]
    assert f"Git commit: {prov['git_commit']}" in text
    for pkg, ver in prov["versions"].items():
        assert f"{pkg} {ver}" in text
    manifest = json.loads(
        next(
            (runs["subliminal"] / "stages").glob("student__same-init__owl__seed1-*/manifest.json")
        ).read_text()
    )
    assert manifest["checksums"]["delta.safetensors"] in text.replace(" ", "")
    assert "seeds [0, 1]" in text and "Trait: animal 'owl'" in text


def _gamma_reads(arm: dict, per_target: dict) -> tuple[str, tuple[float, float]]:
    """How page 1 must print an arm's gamma and interval, and the interval its verdict uses."""
    ci = arm["gamma_ci"]
    if ci["n"] >= 2:
        return f"{fmt_ci(ci['lo'], ci['hi'])} over {ci['n']} seeds", (ci["lo"], ci["hi"])
    t = per_target
    return f"(1 seed, no interval over seeds; {fmt_ci(t['lo'], t['hi'])} over targets)", (
        t["lo"],
        t["hi"],
    )


def test_page_one_leads_with_the_contrasts(matrix_report):
    """Page 1: the question, then each arm's gamma, interval, p and verdict (same-init arms,
    the control comparison, cross-model), what did not move, then the heatmap."""
    summary, analysis, page1, _ = matrix_report
    m = summary["matrix"]
    base = summary["models"]["base"]["model"]
    per_target = {r["arm"]: r["gamma_ci_targets"] for r in analysis["data_controls"]["rows"]}
    order = [page1.index("Subliminal learning (Cloud et al.")]
    words = {}
    same = [n for n, a in m["arms"].items() if a["model"] == base]
    cross = [n for n in m["arms"] if n not in same]
    assert same and cross  # the fixture has both kinds, so the order below is tested
    for name in same + cross:
        a = m["arms"][name]
        kind = "same-init" if name in same else "cross-model"
        reads, ci = _gamma_reads(a, per_target[name])
        numbers = f"gamma = {fmt(a['gamma'])} nats {reads}; p = {fmt(a['p_gamma'])}."
        found = re.search(
            rf"{kind} student '{re.escape(name)}' \(([^)]*)\): ([a-z ]+)\. " + re.escape(numbers),
            page1,
        )
        assert found, f"no page-1 line with the numbers of {name}: {numbers}"
        assert found.group(1).startswith(a["model"])
        words[name] = found.group(2)
        assert words[name] == verdict(a["gamma"], ci, a["p_gamma"])
        order.append(found.start())
        if name == same[-1]:
            order.append(page1.index("Control comparison"))
    assert words["distill-full"] == TRANSMITS and words["sft"] != TRANSMITS  # the planted effects
    for name in same:
        d = m["arms"][name]["did_vs_control"]
        assert (
            f"'{name}' {fmt(d['mean'])} nats {fmt_ci(d['lo'], d['hi'])} over {d['n']} targets"
            in page1
        )
    order.append(page1.index("Did not move:"))
    unmoved = page1[order[-1] :]
    assert m["notes"] and all(n in unmoved for n in m["notes"])
    assert all((f"'{n}'" in unmoved.split("Figure")[0]) == (w == NULL) for n, w in words.items())
    order.append(page1.index("Figure 1 (trait_matrix): Run tinysub-matrix."))
    assert order == sorted(order)
    assert "Headline numbers" not in page1 and "Appendix: provenance" not in page1


def test_one_target_run_says_why_there_is_no_gamma(runs, sub_report):
    info, _ = sub_report
    page1 = pdf_text(info.path, page=0)
    summary = json.loads((runs["subliminal"] / "summary.json").read_text())
    for name, a in summary["matrix"]["arms"].items():
        assert a["gamma"] is None
        assert f"student '{name}'" in page1 and f"gamma not computed ({a['why_no_gamma']})" in page1
        if a.get("did_vs_control"):
            assert (
                f"'{name}' {fmt(a['did_vs_control']['mean'])} nats (one target, no interval)"
                in page1
            )
    assert "(trait_matrix)" not in page1  # one target: no heatmap, said in the matrix section


def _appendix_checks(text: str, run_dirs: list[Path]) -> None:
    """'Appendix: provenance' follows every run's section; each finished run's provenance is in it."""
    start = text.index("Appendix: provenance")
    assert text.count("Appendix: provenance") == 1
    subs = [text.find(f"Run {d.name} - Run folder:", start) for d in run_dirs] + [len(text)]
    for i, d in enumerate(run_dirs):
        heading = re.search(rf"Run {re.escape(d.name)} \(", text)
        if heading:
            assert heading.start() < start
        if (d / "summary.json").exists():
            prov = json.loads((d / "summary.json").read_text())["provenance"]
            own = text[subs[i] : min(x for x in subs[i + 1 :] if x > subs[i])]
            assert subs[i] > start and f"Git commit: {prov['git_commit']}" in own
            assert f"Seeds: run seed {fmt(prov['seed'])}" in own
            assert f"Run folder: {d}".replace(" ", "") not in text[:start].replace(" ", "")
    figures = [m.start() for m in re.finditer(r"Figure \d+ \(\w+\): Run", text)]
    assert figures and max(figures) < start


def test_provenance_is_an_appendix_at_the_end(runs, sub_report, tmp_path):
    info, text = sub_report
    _appendix_checks(text, [runs["subliminal"]])
    page1 = pdf_text(info.path, page=0)
    manifest = next(
        (runs["subliminal"] / "stages").glob("student__same-init__owl__seed1-*/manifest.json")
    )
    checksum = json.loads(manifest.read_text())["checksums"]["delta.safetensors"]
    assert checksum not in page1.replace(" ", "") and "Artifact checksums" not in page1
    assert text.replace(" ", "").index(checksum) > text.replace(" ", "").index(
        "Appendix:provenance"
    )
    dirs = [runs["subliminal"], runs["mlp"], runs["unfinished"]]
    build_report(dirs, tmp_path / "all.pdf")
    combined = pdf_text(tmp_path / "all.pdf")
    _appendix_checks(combined, dirs)
    subs = [combined.index(f"Run {d.name} - Run folder:") for d in dirs[:2]]
    assert subs == sorted(subs) and "Run unfinished No provenance" in combined


def test_missing_analysis_is_said_not_fatal(runs, tmp_path):
    info = build_report([runs["no_analysis"]], tmp_path / "r.pdf")
    text = pdf_text(tmp_path / "r.pdf")
    assert info.figure_ids == ["trait_scores"]
    assert {s[1] for s in info.skipped} == {"update_alignment", "gradient_alignment",
                                            "trait_direction", "probes", "steering", "trajectories"} | set(DATA_SECTIONS)  # fmt: skip
    assert "Update alignment: not computed for this run (reason: analysis.json not found" in text
    assert "Probes: not computed for this run (reason: analysis.json not found" in text


def test_partial_analysis_gives_the_recorded_reason(runs, tmp_path):
    info = build_report([runs["partial"]], tmp_path / "r.pdf")
    text = pdf_text(tmp_path / "r.pdf")
    assert info.figure_ids == ["trait_scores", "trait_direction", "probes"]
    assert ("Gradient alignment: not computed for this run (reason: teacher.mode = 'prompt': "
            "no teacher delta (test))") in text  # fmt: skip


def test_mlp_report(runs, mlp_report):
    info, text = mlp_report
    summary = json.loads((runs["mlp"] / "summary.json").read_text())
    assert info.figure_ids == ["mlp_accuracy", "mlp_cosine"]
    for f in info.figures:
        assert f"Figure {f.number} ({f.id}):" in text
    for m, block in summary["per_m"].items():
        for kind, r in block.items():
            assert f"{m} {kind} {fmt_est(r['acc'])} {fmt(r['acc']['n'])}" in text
    assert f"{fmt(summary['data']['n_train'])} training" in text


def test_combined_report_and_requested_figures(runs, tmp_path):
    dirs = [runs["subliminal"], runs["mlp"], runs["unfinished"]]
    wanted = ["trait_scores", "probes", "mlp_accuracy"]
    info = build_report(dirs, tmp_path / "all.pdf", config_figures=wanted)
    text = pdf_text(tmp_path / "all.pdf")
    assert info.figure_ids == wanted and [f.number for f in info.figures] == [1, 2, 3]
    for f in info.figures:
        assert f"Figure {f.number} ({f.id}): Run {f.run}." in text
    for other in set(FIGURE_IDS) - set(wanted):
        assert f"({other}):" not in text
    assert "Run tinysub (subliminal)" in text and "Run mlp-tiny (mlp-aux-logits)" in text
    assert "Run unfinished: not computed for this run (reason: summary.json not found" in text
    with pytest.raises(ValueError, match="unknown figure"):
        build_report(dirs, tmp_path / "x.pdf", config_figures=["nope"])


def test_report_main_default_path(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = report_main([str(runs["mlp"])], None)
    assert path == Path("reports/mlp-tiny.pdf") and (tmp_path / path).stat().st_size > 0
    assert str(path) in capsys.readouterr().out.splitlines()[-1]
    assert default_report_path([runs["mlp"], runs["subliminal"]]) == Path(
        "reports/mlp-tiny+tinysub.pdf"
    )
    out = report_main([str(runs["mlp"])], str(tmp_path / "x" / "y.pdf"))
    assert out.exists()


def test_malformed_analysis_costs_a_figure_not_the_report(runs, tmp_path):
    run = tmp_path / "odd"
    shutil.copytree(runs["no_analysis"], run)
    odd = {
        "trait_direction": {"students": {"same-init": {"cosine": "oops", "lo": 3}}},
        "probes": {"bases": {"tiny-llama": {"auroc": [None, 0.5], "best_layer": 1}}},
        "steering": {"layer": 0},
        "detection": {"targets": {"owl": {"classifier": "oops"}}},
        "missing": {},
    }
    (run / "analysis.json").write_text(json.dumps(odd))
    info = build_report([run], tmp_path / "odd.pdf")
    text = pdf_text(tmp_path / "odd.pdf")
    assert "probes" in info.figure_ids  # a None AUROC is a gap, not an error
    assert "Figure (trait_direction): could not be drawn for this run (reason:" in text
    assert (
        "Detection: not computed for this run (reason: analysis.json section 'detection' is malformed"
        in text
    )
    (run / "analysis.json").write_text("{not json")
    info = build_report([run], tmp_path / "bad.pdf")
    assert "analysis.json unreadable" in pdf_text(tmp_path / "bad.pdf")
