"""``rt-f2f bench``: run the suites in ``benchmarks/`` and write results.json, plots and a Markdown report.

The suites live in the ``benchmarks`` package of a source checkout (one module per suite, each exposing ``SUITE``;
``benchmarks.runner`` runs them, and a suite that raises is reported as failed while the others still run). This
module finds that package (``load_benchmarks``), checks what the run returns, and renders it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from pathlib import Path
from typing import Any

from .errors import RtF2fError

BENCHMARKS = "benchmarks"  # the suites' package: in a source checkout, never installed with rt_f2f


def benchmarks_root() -> Path | None:
    """The checkout whose ``benchmarks/`` holds the suites: the working folder first, then the one this rt_f2f is in.

    ``benchmarks`` depends on rt_f2f, never the other way (rt_f2f <- engines <- benchmarks), and it is not part of
    an installed rt-f2f; so the suites are found by place, as plug-ins, and loaded by name, the way ``cli`` loads
    subcommands. An installed ``rt-f2f`` run in the repository root therefore finds them too.
    """
    for root in (Path.cwd().resolve(), Path(__file__).resolve().parent.parent):
        if (root / BENCHMARKS / "runner.py").is_file():
            return root
    return None


def load_benchmarks(module: str = BENCHMARKS) -> Any:
    """``benchmarks`` (or one of its modules) from the checkout ``benchmarks_root`` finds."""
    root = benchmarks_root()
    if root is None:
        raise RtF2fError(
            "the benchmark suites are not here: they ship with the rt-f2f source, not with an installed package",
            "run rt-f2f bench in the root of an rt-f2f checkout",
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    loaded = importlib.import_module(module)
    where = Path(loaded.__file__ or "").resolve()
    if not where.is_relative_to(root / BENCHMARKS):
        raise RtF2fError(f"'{module}' was imported from {where}, not from {root}", "rename the other package")
    return loaded


def validate(report: dict[str, Any]) -> list[str]:
    """Problems with a results.json: missing fields, non-finite figures, figures without samples."""
    problems = []
    for key in ("schema", "machine", "versions", "settings", "suites"):
        if key not in report:
            problems.append(f"missing '{key}'")
    for suite in report.get("suites", []):
        if suite.get("status") not in ("ok", "skipped", "failed"):
            problems.append(f"{suite.get('suite')}: bad status {suite.get('status')!r}")
        if suite.get("status") != "ok" and not suite.get("reason"):
            problems.append(f"{suite.get('suite')}: {suite.get('status')} without a reason")
        for fig in suite.get("figures", []):
            where = f"{suite.get('suite')}/{fig.get('name')}"
            value = fig.get("value")
            if not isinstance(value, int | float) or not math.isfinite(value):
                problems.append(f"{where}: value {value!r} is not finite")
            if not isinstance(fig.get("n"), int) or fig["n"] < 1:
                problems.append(f"{where}: sample count {fig.get('n')!r}")
            if not fig.get("unit"):
                problems.append(f"{where}: no unit")
    return problems


# -- plots -------------------------------------------------------------------------------------------------
def _plot_waterfall(series: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.5 * len(series) + 1.5))
    for i, bar in enumerate(series):
        ax.barh(i, bar["end"] - bar["start"], left=bar["start"], color=f"C{i % 10}")
        ax.text(bar["end"], i, f" {1000 * (bar['end'] - bar['start']):.0f} ms", va="center", fontsize=8)
    ax.set_yticks(range(len(series)), [b["stage"] for b in series])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the utterance's first word ended")
    ax.set_title("Per-stage latency, one utterance")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_clause_waterfall(runs: dict[str, list[dict]], path: Path) -> None:
    """Every clause of each run as stacked stage bars from its first word's end to its translated speech starting."""
    import matplotlib.pyplot as plt

    rows = sum(len(clauses) for clauses in runs.values()) + len(runs)
    fig, ax = plt.subplots(figsize=(10, 0.35 * rows + 1.8))
    colours: dict[str, str] = {}
    labels: list[str] = []
    y = 0
    for run, clauses in runs.items():
        labels.append(f"— {run} —")
        y += 1
        for clause in clauses:
            for bar in clause["bars"]:
                colour = colours.setdefault(bar["stage"], f"C{len(colours) % 10}")
                ax.barh(
                    y,
                    bar["end"] - bar["start"],
                    left=bar["start"],
                    color=colour,
                    label=bar["stage"],
                )
            end = clause["bars"][-1]["end"] if clause["bars"] else 0.0
            ax.text(end, y, f" {end:.1f} s", va="center", fontsize=7)
            text = clause["clause"]
            labels.append(text if len(text) <= 40 else text[:38] + "…")
            y += 1
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=False))
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="lower right")
    ax.set_xlabel("seconds since the clause's first word ended (bar end = ear-voice span)")
    ax.set_title("Where each clause's time went")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_lines(curves: dict[str, dict], path: Path, xlabel: str, ylabel: str, title: str, step: bool = False) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, xy in curves.items():
        (ax.step if step else ax.plot)(xy["x"], xy["y"], label=label, **({"where": "post"} if step else {}))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def make_plots(report: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    made: list[Path] = []
    cdfs: dict[str, dict] = {}
    delays: dict[str, dict] = {}
    fps: dict[str, dict] = {}
    for suite in report["suites"]:
        name = suite["suite"]
        for key, value in suite.get("series", {}).items():
            if key == "waterfall" and value:
                path = out_dir / f"waterfall_{name}.png"
                _plot_waterfall(value, path)
                made.append(path)
            elif key == "clause_waterfall" and value:
                path = out_dir / f"clause_waterfall_{name}.png"
                _plot_clause_waterfall(value, path)
                made.append(path)
            elif key.startswith("cdf:") and value:
                xs = np.sort(np.asarray(value, dtype=float))
                cdfs[f"{name}: {key[4:]}"] = {"x": xs.tolist(), "y": (np.arange(1, xs.size + 1) / xs.size).tolist()}
            elif key.startswith("delay:") and value:
                delays[f"{name}: {key[6:]}"] = {"x": value["t"], "y": value["v"]}
            elif key.startswith("fps:") and value:
                fps[key[4:]] = {"x": value["batch"], "y": value["fps"]}
    if cdfs:
        path = out_dir / "latency_cdf.png"
        _plot_lines(cdfs, path, "latency (s)", "fraction of samples", "Latency CDFs", step=True)
        made.append(path)
    if delays:
        path = out_dir / "output_delay.png"
        _plot_lines(delays, path, "session time (s)", "output delay (s)", "Output delay over time")
        made.append(path)
    if fps:
        path = out_dir / "lipsync_fps.png"
        _plot_lines(fps, path, "batch size", "generator frames / s", "Lip-sync throughput per backend and batch")
        made.append(path)
    return made


def render_markdown(report: dict[str, Any], plots: list[Path]) -> str:
    m = report["machine"]
    lines = [
        "# rt-f2f benchmark report",
        "",
        f"- date: {m['date']}",
        f"- machine: {m.get('cpu_model', m['processor'])}, {m['cpu_count']} cores"
        + (f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU"),
        f"- settings: {json.dumps(report['settings'])}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "",
    ]
    for suite in report["suites"]:
        lines.append(f"## {suite['suite']} ({suite['status']}, {suite['seconds']:.1f} s)")
        lines.append("")
        if suite["status"] != "ok":
            lines += [f"{suite['status']}: {suite['reason']}", ""]
            continue
        lines += ["| figure | value | unit | n | better | note |", "|---|---:|---|---:|---|---|"]
        for f in suite["figures"]:
            cells = [f["name"], f"{f['value']:.4g}", f["unit"], str(f["n"]), f["better"], f["note"]]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from .outputs import check_output

    out_dir = check_output("--out", args.out, folder=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RtF2fError("--device cuda: no CUDA device is visible", "run on a GPU machine, or use --device cpu")
    report = load_benchmarks(f"{BENCHMARKS}.runner").run_suites(args.suite, args.quick, args.device, out_dir)
    problems = validate(report)
    if problems:
        raise RtF2fError("benchmark results failed validation: " + "; ".join(problems), "this is a bug in a suite")
    (out_dir / "results.json").write_text(json.dumps(report, indent=2))
    plots = make_plots(report, out_dir)
    (out_dir / "report.md").write_text(render_markdown(report, plots))
    print(f"wrote {out_dir / 'results.json'}, {out_dir / 'report.md'} and {len(plots)} plots")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="measure latency, frame rate and cost; write results.json, plots, report")
    p.add_argument("--quick", action="store_true", help="short runs (about 5 minutes on 2 CPU cores)")
    try:
        suites = ", ".join(load_benchmarks().SUITE_MODULES)
    except RtF2fError:  # not in a checkout: run says so, with what to do, when asked to run
        suites = "none here: run in the root of an rt-f2f checkout"
    p.add_argument("--suite", nargs="+", metavar="NAME", help=f"run only these suites ({suites})")
    p.add_argument("--out", default="bench-results", help="output folder (default: bench-results)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.set_defaults(func=run)
