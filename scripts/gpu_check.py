"""The one-command GPU check (issue 28): the GPU bench, runs/owl-numbers.toml and
runs/transmission-gpu.toml, with one JSON of timings, % of bf16 peak and gamma per arm.

    python scripts/gpu_check.py                      # all three, JSON -> reports/gpu-check.json
    python scripts/gpu_check.py --only bench,owl-numbers --out /tmp/check.json
    python scripts/gpu_check.py --dry-run            # tiny models on CPU: the wiring, in seconds

Needs only the package's light dependencies (torch, transformers, peft, gguf, numpy, scipy,
safetensors, jaxtyping, einops, matplotlib, tqdm, filelock): no PDF, no TransformerLens.
Each part runs in its own process (`python -m interp.cli ...`), so one that fails is recorded
with its error and the others still run. `--only` parts are merged into an existing `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("bench", "owl-numbers", "transmission-gpu")

# The dry run's stand-ins: the same configs on tiny random models, a handful of rows.
DRY_SETS = {
    "owl-numbers": [
        'teacher.model="tiny-llama"', 'students=[{name="same-init"}, {name="control", data="control"}, '
        '{name="cross-model", model="tiny-gemma"}]', "data.n_prompts=12", "data.n_keep=8", "data.batch_size=6",
        "data.max_new_tokens=12", 'data.constraint="list"', "train.epochs=1", "train.batch_size=4",
        "train.micro_batch_size=2", "train.seeds=[0,1]", "eval.n_questions=3", "eval.samples_per_question=2", "eval.batch_size=16",
        "eval.bootstrap=100",
    ],
    "transmission-gpu": [
        'teacher.model="tiny-llama"', 'trait.targets=["owl","cat","dog"]', "data.n_prompts=8", "data.n_keep=6",
        "data.batch_size=4", "data.max_new_tokens=12", "train.epochs=1", "train.batch_size=3",
        "train.micro_batch_size=3", "train.seeds=[0,1]", "train.warmup_steps=1", "eval.n_questions=3",
        "eval.samples_per_question=2", "eval.batch_size=16", "eval.bootstrap=100",
        'students=[{name="distill-full"}, {name="distill-numbers", distill_vocab="numbers"}, '
        '{name="sft", objective="sft"}, {name="full-distill-full", method="full", lr=2e-5}, '
        '{name="cross-model", model="tiny-gemma", distill_vocab="numbers"}, '
        '{name="control-full", data="control"}]',
    ],
}


def _interp(args: list[str], env: dict[str, str], timeout: float | None = None) -> tuple[int, float, str]:
    """Run `python -m interp.cli ARGS`, its output streamed (a log shows progress), its tail kept.
    Past `timeout` seconds it is killed: returncode 124, and what it finished stays on disk."""
    t0 = time.time()
    tail: list[str] = []
    with subprocess.Popen([sys.executable, "-m", "interp.cli", *args], cwd=ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as p:  # fmt: skip
        killer = threading.Timer(timeout, p.kill) if timeout else None
        if killer is not None:
            killer.start()
        assert p.stdout is not None
        for line in p.stdout:
            if "it/s]" not in line and "s/it]" not in line:  # progress bars: too many lines for a log
                sys.stdout.write(line)
            tail = (tail + [line])[-40:]
        p.wait()
        if killer is not None:
            killer.cancel()
    timed_out = timeout is not None and p.returncode != 0 and time.time() - t0 >= timeout
    return (124 if timed_out else p.returncode), round(time.time() - t0, 1), "".join(tail)[-2000:]


def stage_times(run: Path) -> list[dict[str, Any]]:
    """Every finished stage of a run folder, in the order it started: name, wall seconds, and the
    stacked group it trained or was evaluated in (the manifest's notes)."""
    rows = []
    for m in sorted((run / "stages").glob("*/manifest.json")):
        d = json.loads(m.read_text())
        st = (d.get("notes") or {}).get("stacked") or {}
        rows.append({"stage": d["stage"], "started": d.get("started"), "wall_s": d.get("wall_s"),
                     **({"stacked": len(st.get("with", []))} if st else {})})  # fmt: skip
    return sorted(rows, key=lambda r: (r["started"] or "", r["stage"]))


def arms(summary: dict[str, Any]) -> dict[str, Any]:
    """gamma per arm with its interval over seeds, p, the control difference, and the student model."""
    out = {}
    for name, a in (summary.get("matrix") or {}).get("arms", {}).items():
        ci = a.get("gamma_ci") or {}
        out[name] = {"model": a.get("model"), "objective": a.get("objective"), "method": a.get("method"),
                     "distill_vocab": a.get("distill_vocab"), "gamma": a.get("gamma"),
                     "gamma_ci": [ci.get("lo"), ci.get("hi")], "seeds": ci.get("n"), "p": a.get("p_gamma"),
                     "gamma_per_seed": a.get("gamma_per_seed"),
                     "gamma_targets_ci": a.get("gamma_targets_ci"), "did_vs_control": a.get("did_vs_control")}  # fmt: skip
    return out


def run_part(config: str, out_dir: Path, sets: list[str], env: dict[str, str],
             timeout: float | None = None) -> dict[str, Any]:  # fmt: skip
    args = ["run", f"runs/{config}.toml", "--out-dir", str(out_dir)]
    for s in sets:
        args += ["--set", s]
    rc, wall, tail = _interp(args, env, timeout)
    res: dict[str, Any] = {"returncode": rc, "wall_s": wall, "stages": stage_times(out_dir / config)}
    summary_path = out_dir / config / "summary.json"
    if rc != 0 or not summary_path.exists():
        return res | {"error": ("timed out" if rc == 124 else "failed") + ": " + tail}
    s = json.loads(summary_path.read_text())
    prov = s.get("provenance", {})
    return res | {"run_wall_s": prov.get("wall_s"), "phases_s": prov.get("phases_s"), "arms": arms(s),
                  "teacher_own_shift": (s.get("matrix") or {}).get("teacher_own_shift"),
                  "stages_computed": len(prov.get("stages_computed", [])), "filter": {
                      k: {"kept": v.get("kept"), "total": v.get("total"), "n_dataset": v.get("n_dataset")}
                      for k, v in s.get("filter", {}).items()}}  # fmt: skip


def bench_part(out: Path, env: dict[str, str], dry: bool, device: str = "cpu") -> dict[str, Any]:
    args = (["bench", "--model", "tiny-llama", "--device", device, "--repeats", "1", "--stack", "1,2"] if dry else
            ["bench", "--n-prompts", "64", "--batch-size", "64", "--n-questions", "10", "--stack", "1,8,32",
             "--profile"])  # fmt: skip
    rc, wall, tail = _interp([*args, "--out", str(out)], env)
    if rc != 0 or not out.exists():
        return {"returncode": rc, "wall_s": wall, "error": tail}
    b = json.loads(out.read_text())
    keep = ("case", "impl", "median_s", "train_tok_per_s", "prefill_tok_per_s", "decode_tok_per_s", "mfu",
            "mfu_measured_peak", "peak_mem_mb", "students", "tokens", "ratio_to_best_reference", "profile")  # fmt: skip
    return {"returncode": rc, "wall_s": wall, "device_name": b.get("device_name"), "params": b.get("params"),
            "peak_bf16_flops": b.get("peak_bf16_flops"), "measured_bf16_flops": b.get("measured_bf16_flops"),
            "flops_per_token": "soft-label step: 4N per trained token (LoRA), N = params; teacher labels outside the step",
            "results": [{k: r[k] for k in keep if k in r} for r in b.get("results", [])]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {PARTS}")
    ap.add_argument("--out", default="reports/gpu-check.json")
    ap.add_argument("--runs-dir", default=None, help="where the runs go (default: a folder beside --out)")
    ap.add_argument("--dry-run", action="store_true", help="tiny models: checks the wiring only")
    ap.add_argument("--device", default=None, help="override the configs' device (the dry run's default: cpu)")
    ap.add_argument("--part-timeout", type=float, default=None,
                    help="seconds a run may take; past it the run is stopped and its finished stages reported")
    args = ap.parse_args(argv)
    parts = [p for p in args.only.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        print(f"gpu_check: unknown part(s) {unknown}; choose from {list(PARTS)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs_dir = Path(args.runs_dir or out.with_suffix("").as_posix() + "-runs")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = json.loads(out.read_text()) if out.exists() else {}
    result.setdefault("parts", {})
    result["dry_run"] = args.dry_run
    for part in parts:
        t0 = time.time()
        print(f"gpu_check: {part}", flush=True)
        if part == "bench":
            res = bench_part(out.with_name(out.stem + "-bench.json"), env, args.dry_run, args.device or "cpu")
        else:
            device = args.device or ("cpu" if args.dry_run else None)
            sets = (DRY_SETS[part] if args.dry_run else []) + ([f'device="{device}"'] if device else [])
            res = run_part(part, runs_dir, sets, env, args.part_timeout)
        result["parts"][part] = res | {"part_wall_s": round(time.time() - t0, 1)}
        out.write_text(json.dumps(result, indent=2) + "\n")  # after each part: a killed check keeps what finished
    failed = [p for p in parts if result["parts"][p].get("returncode") != 0]
    print(f"gpu_check: {out}" + (f"; failed: {failed}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
