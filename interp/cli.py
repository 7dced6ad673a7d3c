"""The `interp` command: run / sweep / plan / bench / analyze / scan / report / validate / ls. Thin: it parses, then calls the library."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from interp.config import ConfigError
from interp.runner import run_config

log = logging.getLogger("interp")

# Exit codes (also in `interp --help`): a caller can tell bad input from a failed command.
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
EPILOG = (f"exit codes: {EXIT_OK} ok; {EXIT_FAILED} the command failed (one line; `interp -v ...` prints the "
          f"traceback); {EXIT_BAD_INPUT} bad input: a config, a path or an argument (one line naming it, before any "
          f"work); {EXIT_INTERRUPTED} interrupted (finished stages are kept and reused)")  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """argparse with its error as one line (no usage block): `interp scan: error: ...`, exit 2."""

    def error(self, message: str) -> NoReturn:
        message = _LINE_BREAKS.sub(lambda m: repr(m.group())[1:-1], message)  # an argument with a '\r' in it
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


# what str.splitlines breaks at, and every other control character: escaped in one-line messages
_LINE_BREAKS = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text!r})")
    return n


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return "; ".join(lines) or "(no message)"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("transformers", "peft", "nnsight", "transformer_lens", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _cmd_run(args: argparse.Namespace) -> int:
    from interp.store.outputs import check_out_dir

    check_out_dir(args.out_dir, "--out-dir")
    run_config(args.config, args.set, args.out_dir)
    return 0


def _sweep(args: argparse.Namespace) -> Any:
    from interp.store.outputs import check_out_dir
    from interp.sweep import load_sweep

    check_out_dir(args.out_dir, "--out-dir")
    return load_sweep(args.sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from interp.sweep import SweepTaskError, run_sweep

    try:
        run_sweep(_sweep(args), engine=args.engine, out_dir=args.out_dir, address=args.address, cluster=args.cluster,
                  retries=args.retries)  # fmt: skip
    except SweepTaskError as e:  # a task failed: one line after the engine's report in the log
        print(f"interp: error: {e}", file=sys.stderr)
        return 1
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from interp.fmt import format_table
    from interp.sweep import build_graph, plan, sweep_root

    sw = _sweep(args)
    rows = plan(sw, args.out_dir, args.engine)
    print(f"# sweep {sw.name}: {len(sw.points)} points, {len(build_graph(sw))} tasks -> {sweep_root(sw, args.out_dir)}")
    print(format_table(rows))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import json

    from interp.bench import run_bench
    from interp.fmt import format_table
    from interp.lm.models import configure_threads
    from interp.store.outputs import check_output
    from interp.store.stages import write_json

    out = check_output(args.out, "the bench results (--out)", suffixes=(".json",))  # before minutes of timing
    configure_threads()
    stack = [int(x) for x in args.stack.split(",")] if args.stack else None
    res = run_bench(args.model, args.device, args.repeats, args.compile, args.n_prompts, args.new_tokens, args.batch_size,
                    args.n_questions, stack, args.stack_rows, args.profile, args.autocast)
    cols = ("case", "impl", "median_s", "ratio_to_best_reference", "prefill_tok_per_s", "decode_tok_per_s",
            "padding_fraction", "pass_rate", "mean_answer_chars", "mfu", "mfu_measured_peak")  # fmt: skip
    print(format_table([{c: r.get(c, "") for c in cols} for r in res["results"]]))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, res)
    print(f"\nbench: {out} ({res['wall_s']:.0f}s); {json.dumps(res['workload'])}")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from interp.analysis.run import analyze_run, print_analysis
    from interp.lm.models import configure_threads
    from interp.store.verified import verify_run

    for run in args.runs:  # every run's files against their manifests, before any work
        if Path(run).is_dir():  # a folder that is not there: analyze_run's own line (after --only's)
            verify_run(run)
    configure_threads()
    only = [x.strip() for x in args.only.split(",") if x.strip()] if args.only else None
    for run in args.runs:
        res = analyze_run(run, only=only)
        print(print_analysis(res))
        print(f"\nanalysis: {Path(run) / 'analysis.json'}")
    return 0


def _cmd_scan(args: argparse.Namespace) -> int:
    from interp.lm.models import Variant, configure_threads, trusting_remote_code
    from interp.mech.scan import scan_dataset

    if args.control:  # its AUROC is scikit-learn's
        from interp.extras import require

        require("`interp scan --control`", "sklearn")
    configure_threads()
    teacher = Variant(args.teacher, system=args.system, delta_path=Path(args.delta) if args.delta else None)
    # a Hub teacher whose repository ships its own model code runs it only when asked
    with trusting_remote_code([args.teacher] if args.trust_remote_code else []):
        res = scan_dataset(args.dataset, teacher, args.control, args.out, args.device, args.dtype, args.batch_size)
    line = f"{res['n']} rows, mean log-likelihood ratio per token {res['mean_llr_per_token']:.4f}"
    if "auroc" in res:
        a = res["auroc"]
        line += (f"; control {res['n_control']} rows, {res['mean_llr_per_token_control']:.4f}; "
                 f"AUROC {a['auroc']:.3f} [{a['lo']:.3f}, {a['hi']:.3f}]")  # fmt: skip
    print(f"{line}\nscores: {res['out']}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from interp.extras import require

    require("`interp report`", "reportlab")
    from interp.report.build import report_main
    from interp.store.verified import verify_run
    from interp.sweep import is_sweep_folder, report_sweep

    sweeps = [r for r in args.runs if is_sweep_folder(r)]
    if sweeps:  # a sweep folder: its own PDF (the studies it holds), from its points' summaries
        if len(args.runs) > 1:
            raise ConfigError(f"interp report: {sweeps[0]} is a sweep folder; give it alone")
        for p in sorted((Path(sweeps[0]) / "points").glob("*/summary.json")):
            verify_run(p.parent)
        print(report_sweep(sweeps[0], args.output))
        return 0
    for run in args.runs:  # a folder that is not there: report_main's own line
        if Path(run).is_dir():
            verify_run(run)

    report_main(args.runs, args.output)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from interp.lm.models import HUB_IDS_UNCHECKED, unchecked_note
    from interp.registry import load_experiment

    token = HUB_IDS_UNCHECKED.set(True)  # a Hub id is a valid value even on an offline machine
    try:
        for path in args.configs:
            if _is_sweep_file(path):  # a sweep: its base config under every point of its axes
                from interp.sweep.spec import load_sweep

                if args.set:
                    raise ConfigError(f"{path}: --set applies to configs; a sweep file sets its axes itself")
                sweep = load_sweep(path)
                print(f"{path}: ok (sweep {sweep.name}, {len(sweep.points)} points)")
                continue
            exp, cfg = load_experiment(path, args.set)
            print(f"{path}: ok ({exp.kind}, name {cfg.name})")
            for spec in getattr(cfg, "model_specs", list)():
                note = unchecked_note(spec)
                if note:
                    print(f"{path}: note: {note}")
    finally:
        HUB_IDS_UNCHECKED.reset(token)
    return 0


def _is_sweep_file(path: str) -> bool:
    """A sweep file names its base config (`base = ...`); a config never has that key."""
    import tomllib

    try:
        return "base" in tomllib.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False  # the config reader says what is wrong with it


def _cmd_ls(args: argparse.Namespace) -> int:
    from interp.store.artifacts import load_run

    root = Path(args.runs)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder of runs")
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        run = load_run(d)  # the one reader: a stale or unreadable summary comes back None, with why
        status = "finished" if run.summary else "STALE" if "summary.json" in run.stale else "incomplete"
        if run.stale:
            status += " (" + "; ".join(f"{k} is stale: {v}" for k, v in run.stale.items()) + ")"
        extra = ""
        if run.summary:
            prov = run.summary.get("provenance", {})
            extra = f", {prov.get('wall_s', '?')}s, commit {str(prov.get('git_commit'))[:10]}"
        print(f"{d.name}: {status}, {len(run.manifests())} stages done{extra}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="interp", description=__doc__, epilog=EPILOG)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run an experiment config (stages are cached and resumable)")
    r.add_argument("config")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set data.n_prompts=64")  # fmt: skip
    r.add_argument(
        "--out-dir", default=None, help="parent of the run folder (default: the config's folder)"
    )
    r.set_defaults(fn=_cmd_run)

    for cmd, fn, what in (("sweep", _cmd_sweep, "run a sweep file's grid of configs on an engine"),
                          ("plan", _cmd_plan, "print a sweep's task graph: what is cached, what will run, where")):
        w = sub.add_parser(cmd, help=what)
        w.add_argument("sweep", help="a sweep file (see interp.sweep.spec)")
        w.add_argument("--engine", default="local", choices=["local", "ray", "slurm"])
        w.add_argument("--out-dir", default=None, help="parent of the sweep folder (default: the file's folder)")
        w.add_argument("--address", default=None, help="ray: a running cluster ('auto', 'ray://host:10001')")
        w.add_argument("--cluster", default=None, choices=["slurm", "local", "debug"],
                       help="slurm: submitit's executor (default: Slurm when it is there, else local)")
        w.add_argument("--retries", type=int, default=2, choices=range(0, 11), metavar="N",
                       help="ray: reruns of a task whose worker died (default 2)")
        w.set_defaults(fn=fn)

    b = sub.add_parser("bench", help="time the suite's generation, scoring and training against references")
    b.add_argument("--model", default="smollm2-135m-instruct")
    b.add_argument("--device", default="auto")
    b.add_argument("--repeats", type=int, default=3, choices=range(1, 101), metavar="N")
    b.add_argument("--compile", action="store_true", help="also HF generate with a static cache and torch.compile")
    # defaults sized for a 2-core CPU (~4 min); a GPU: --n-prompts 256 --batch-size 256 --n-questions 50
    b.add_argument("--n-prompts", type=int, default=8, choices=range(1, 100001), metavar="N")
    b.add_argument("--new-tokens", type=int, default=40, choices=range(1, 4097), metavar="N")
    b.add_argument("--batch-size", type=int, default=8, choices=range(1, 4097), metavar="N")
    b.add_argument("--n-questions", type=int, default=2, choices=range(1, 51), metavar="N")
    b.add_argument("--stack", default=None, help="students per stacked soft-label step, e.g. 1,8,32 (default 1,2)")
    b.add_argument("--stack-rows", type=_positive_int, default=32, help="rows per student in the stacked step")
    b.add_argument("--autocast", default="auto", choices=("auto", "bf16", "off"),
                   help="the stacked step's precision, as a run's train.autocast (default auto: bf16 where native)")
    b.add_argument("--profile", action="store_true",
                   help="record the top operators of the largest stacked step (torch.profiler)")
    b.add_argument("--out", default="reports/bench.json")
    b.set_defaults(fn=_cmd_bench)

    a = sub.add_parser("analyze", help="mechanism analyses over finished subliminal runs")
    a.add_argument("runs", nargs="+", help="run folders, e.g. runs/quickstart")
    a.add_argument("--only", default=None, metavar="SECTIONS",
                   help="comma-separated sections to compute (e.g. detection,incontext,data_controls); the others are listed as not requested")  # fmt: skip
    a.set_defaults(fn=_cmd_analyze)

    sc = sub.add_parser("scan", help="score a JSONL of prompt/completion pairs by how much each carries a teacher")
    sc.add_argument("dataset", help="JSONL, one {\"prompt\": ..., \"completion\": ...} per line")
    sc.add_argument("--teacher", required=True, help="the teacher's base model (spec or Hub id)")
    sc.add_argument("--system", default=None, help="the teacher's system prompt (e.g. the trait prompt)")
    sc.add_argument("--delta", default=None, help="the teacher's delta (delta.safetensors of a finetune)")
    sc.add_argument("--control", default=None, help="a control JSONL: also report the AUROC against it")
    sc.add_argument("--out", default=None, help="scores JSONL (default: <dataset>.scan.jsonl)")
    sc.add_argument("--device", default="auto")
    sc.add_argument("--dtype", default="auto")
    sc.add_argument("--batch-size", type=_positive_int, default=16, metavar="N", help="rows per forward (default 16)")
    sc.add_argument("--trust-remote-code", action="store_true",
                    help="let a Hub teacher run the model code its repository ships (off by default)")  # fmt: skip
    sc.set_defaults(fn=_cmd_scan)

    rp = sub.add_parser("report", help="PDF report from finished runs (reports/<name>.pdf)")
    rp.add_argument("runs", nargs="+", help="one or more run folders (several: a combined report), or one sweep folder (its sweep.pdf)")
    rp.add_argument("-o", "--output", default=None, help="PDF path (default reports/<name>.pdf)")
    rp.set_defaults(fn=_cmd_report)

    v = sub.add_parser("validate", help="check config files (and sweep files, every point), and their models' layers and modules (from the models' configs), without running anything")
    v.add_argument("configs", nargs="+")
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    v.set_defaults(fn=_cmd_validate)

    ls = sub.add_parser("ls", help="list run folders and their state")
    ls.add_argument("runs", nargs="?", default="runs")
    ls.set_defaults(fn=_cmd_ls)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from interp.extras import MissingExtra
    from interp.lm.models import ModelError

    try:
        return args.fn(args)
    except (ConfigError, ModelError, MissingExtra) as e:  # bad input: the message names it
        _traceback(args.verbose)
        print(f"interp: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interp: interrupted; finished stages are kept and will be reused", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # the one boundary: any other failure is one line too, its traceback behind -v
        _traceback(args.verbose)
        hint = "" if args.verbose else "; run with -v for the traceback"
        print(f"interp {args.command}: error: {_one_line(e)} ({type(e).__name__}){hint}", file=sys.stderr)
        return EXIT_FAILED


def _traceback(verbose: bool) -> None:
    if verbose:
        traceback.print_exc(file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
