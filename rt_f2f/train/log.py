"""A training run's record: every logged step and evaluation in a JSON file, and a loss plot beside it.

The JSON is rewritten (atomically) at each evaluation so a run that dies leaves its history; a resumed run appends
to the history it finds. The plot is a PNG (matplotlib's Agg backend: no display needed) with one line per loss.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..audio import write_json


@dataclass
class TrainLog:
    """``train`` rows: {"step", "loss", ...}; ``val`` rows: {"step", ...metrics}; ``config``: the run's settings."""

    path: Path
    config: dict[str, object] = field(default_factory=dict)
    train: list[dict[str, float]] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def open(cls, path: str | Path, config: dict[str, object], resume_step: int = 0) -> TrainLog:
        """A log at ``path``; when resuming, rows up to ``resume_step`` from an earlier run are kept."""
        path = Path(path)
        log = cls(path, config)
        if resume_step > 0 and path.is_file():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                old = {}
            log.train = [r for r in old.get("train", []) if r.get("step", 0) <= resume_step]
            log.val = [r for r in old.get("val", []) if r.get("step", 0) <= resume_step]
        return log

    def add_train(self, step: int, **values: float) -> None:
        self.train.append({"step": step, **{k: float(v) for k, v in values.items()}})

    def add_val(self, step: int, **values: float) -> None:
        self.val.append({"step": step, **{k: float(v) for k, v in values.items()}})

    def save(self, plot: bool = True) -> None:
        write_json(self.path, {"config": self.config, "train": self.train, "val": self.val})
        if plot and (self.train or self.val):
            self.plot(self.path.with_suffix(".png"))

    def plot(self, out: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        from ..audio import atomic_output

        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
        for rows, prefix, style in ((self.train, "train", "-"), (self.val, "val", "o--")):
            keys = sorted({k for r in rows for k in r if k != "step"})
            for k in keys:
                pts = [(r["step"], r[k]) for r in rows if k in r]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=f"{prefix} {k}", markersize=3)
        ax.set_xlabel("step")
        ax.set_ylabel("loss / metric")
        ax.set_title(str(self.config.get("network", "training")))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        with atomic_output(out) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        return out
