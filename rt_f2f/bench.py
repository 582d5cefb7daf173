"""``rt-f2f bench``: run the suites in ``benchmarks/`` and write results.json, plots and a Markdown report.

The suites live in the ``benchmarks`` package (one module per suite, each exposing ``SUITE``); this module only
runs them, checks what they return, and renders it. A suite that raises is reported as failed with its error,
and the others still run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import time
import traceback
from pathlib import Path
from typing import Any

from .errors import RtF2fError

PACKAGES = (
    "rt-f2f", "numpy", "torch", "onnxruntime", "ctranslate2", "faster-whisper", "piper-tts", "kokoro-onnx",
    "aiortc", "av", "mediapipe",
)  # fmt: skip


def _suites() -> dict[str, Any]:
    from benchmarks import SUITE_MODULES

    return SUITE_MODULES


def run_suites(names: list[str] | None, quick: bool, device: str, out_dir: Path) -> dict[str, Any]:
    from benchmarks.common import BenchContext, SuiteResult, machine_info, skipped, versions

    modules = _suites()
    unknown = [n for n in names or [] if n not in modules]
    if unknown:
        raise RtF2fError(f"unknown suite(s): {', '.join(unknown)}", "known suites: " + ", ".join(modules))
    ctx = BenchContext(quick=quick, device=device, out_dir=str(out_dir))
    results = []
    selected = names or list(modules)
    for i, name in enumerate(selected, 1):
        ctx.progress(f"[bench {i}/{len(selected)}] {name} ...")
        start = time.perf_counter()
        try:
            module = importlib.import_module(modules[name])
        except ImportError as exc:
            result = skipped(name, f"component not built or not importable: {exc}")
        else:
            try:
                result = module.SUITE.run(ctx)
            except Exception as exc:  # a broken suite must not hide the others
                result = SuiteResult(suite=name, status="failed", reason=f"{type(exc).__name__}: {exc}")
                ctx.progress(traceback.format_exc())
        result.seconds = time.perf_counter() - start
        ctx.progress(f"[bench {i}/{len(selected)}] {name}: {result.status} in {result.seconds:.1f} s")
        results.append(result)
    return {
        "schema": "rt-f2f-bench/1",
        "machine": machine_info(),
        "versions": versions(PACKAGES),
        "settings": {"quick": quick, "device": device, "suites": selected},
        "suites": [r.to_json() for r in results],
    }


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
    report = run_suites(args.suite, args.quick, args.device, out_dir)
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
        suites = ", ".join(_suites())
    except ImportError:  # an install without the benchmarks package: run_suites says so when asked to run
        suites = "none installed"
    p.add_argument("--suite", nargs="+", metavar="NAME", help=f"run only these suites ({suites})")
    p.add_argument("--out", default="bench-results", help="output folder (default: bench-results)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.set_defaults(func=run)
