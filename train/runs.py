"""Run identity: which files belong to one trained (dataset, model, seed) run, or (dataset, level, model,
seed) for a dataset with symmetry levels (smoke), and its checkpoints.

The one place the path pattern is spelled (``dvc.yaml`` spells it again because DVC templates cannot
import Python; tests/test_architecture.py checks that the two agree). No torch import: the report stage
uses it without loading any model code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHECKPOINTS = ("early", "best")


@dataclass(frozen=True)
class RunId:
    dataset: str
    model: str
    seed: int
    # the symmetry level trained on (smoke); None: a dataset without levels. E_0, the exactly symmetric
    # level the study is about, keeps the plain names; every other level is named in them
    level: int | None = None

    @property
    def data_name(self) -> str:
        """The dataset, with the level's config name for a level other than E_0: ``smoke-E5``, ``smoke``."""
        return self.dataset if not self.level else f"{self.dataset}-E{self.level}"

    @property
    def name(self) -> str:
        return f"{self.data_name}-{self.model}-seed{self.seed}"

    def run_dir(self, runs: Path) -> Path:
        """Checkpoints (``early.pt``, ``best.pt``, ``last.pt``) of this run."""
        level = (f"E{self.level}",) if self.level else ()
        return Path(runs, self.dataset, *level, self.model, f"seed{self.seed}")

    def checkpoint(self, runs: Path, which: str) -> Path:
        return self.run_dir(runs) / f"{which}.pt"

    def train_metrics(self, metrics_dir: Path) -> Path:
        return Path(metrics_dir) / "train" / f"{self.name}.json"

    def curves(self, metrics_dir: Path) -> Path:
        return Path(metrics_dir) / "curves" / f"{self.name}.json"

    def landscape_metrics(self, metrics_dir: Path, checkpoint: str) -> Path:
        return Path(metrics_dir) / "landscape" / f"{self.name}-{checkpoint}.json"

    def spectrum(self, metrics_dir: Path, checkpoint: str) -> Path:
        return Path(metrics_dir) / "spectra" / f"{self.name}-{checkpoint}.json"


def baseline_metrics(metrics_dir: Path, dataset: str) -> Path:
    """Scores of the trivial predictors (persistence, upsampling) on a dataset's valid and test splits
    (smoke: the first trained level's under ``splits``, every trained level's under ``levels``)."""
    return Path(metrics_dir) / "baselines" / f"{dataset}.json"


def metric_key(metric: str, prefix: str = "test") -> str:
    """A metric's key in the run and summary files (``test_rmse``, ``best_valid_mae``; ``metric`` from the
    dataset's kind, train/kinds.py): spelt here only, so a grep for the helper finds every use."""
    return f"{prefix}_{metric}"
