"""`interp bench` on a tiny model: every case timed with a ratio, and the suite's outputs equal
the references' where they must (the list grammar's texts, the log-prob score)."""

from __future__ import annotations

import json

from interp.cli import main


def test_bench_reports_every_case_with_its_ratio(tmp_path):
    out = tmp_path / "bench.json"
    argv = ["bench", "--model", "tiny-llama", "--n-prompts", "4", "--batch-size", "4", "--new-tokens", "10",
            "--repeats", "2", "--profile", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    res = json.loads(out.read_text())
    rows = res["results"]
    cases = {r["case"] for r in rows}
    assert cases == {"list grammar", "token constraint", "log-prob score", "sampled eval", "training step",
                     "soft-label step x1", "soft-label step x2"}
    stacked = next(r for r in rows if r["impl"] == "suite: 2 stacked students")
    ops = stacked["profile"]  # the largest stacked step, profiled: named operators with their time
    assert len(ops) >= 5 and all(o["self_ms"] >= 0 and o["calls"] >= 1 for o in ops)
    assert any("mm" in o["op"] for o in ops) and ops[0]["self_ms"] >= ops[-1]["self_ms"]
    from interp.lm.models import native_bf16, resolve_device

    # the stacked step runs as a run's autocast = "auto" would on the device the bench picked
    assert {r["autocast"] for r in rows if r["case"].startswith("soft-label")} == {
        "bf16" if native_bf16(resolve_device("auto")) else "off"}
    assert "profile" not in next(r for r in rows if r["impl"] == "suite: 1 stacked students")
    assert stacked["students"] == 2 and stacked["tokens"] == 2 * next(
        r for r in rows if r["impl"] == "suite: 1 stacked students")["tokens"]  # fmt: skip
    for case in cases:  # each case: one suite row, at least one reference, a ratio on every row
        roles = [r["role"] for r in rows if r["case"] == case]
        assert roles.count("suite") == 1 and "reference" in roles
    assert all(r["ratio_to_best_reference"] > 0 and len(r["repeats_s"]) == 2 for r in rows)
    best = {c: min(r["median_s"] for r in rows if r["case"] == c and r["role"] == "reference") for c in cases}
    assert all(abs(r["ratio_to_best_reference"] - r["median_s"] / best[r["case"]]) < 1e-3 * r["ratio_to_best_reference"] + 1e-3
               for r in rows)  # fmt: skip
    grammar = {r["impl"]: r for r in rows if r["case"] == "list grammar"}
    suite, python = grammar["suite: ListAutomaton"], grammar["IntegerListGrammar (Python, per row)"]
    assert (suite["pass_rate"], suite["mean_answer_chars"]) == (python["pass_rate"], python["mean_answer_chars"])
    score = next(r for r in rows if r["impl"] == "suite: candidate_logprobs")
    assert score["max_abs_diff_vs_naive"] < 1e-3  # the cached score equals one forward per candidate
    assert res["wall_s"] > 0 and res["versions"]["torch"]
