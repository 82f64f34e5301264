"""Wang et al. 2022's two smoke test protocols in the report: *Future* and *Domain*, side by side.

*Future* is the later frames of the training simulations (every run's ``test_rmse``); *Domain* is every
window of held-out buoyancy ladders no run trained on (``test_domain_rmse``, the smoke stage's
``smoke.domain`` stores). Per trained level: each protocol's trivial baselines, each model's mean ± sd over
seeds and the distinct simulations and windows behind the numbers (rotated copies of one simulation
count once). Per level the two relaxed-vs-strict pairs are claims of the report's one Holm family on the
Domain protocol (the Future ones are the level sweep's and the smoke section's). Last, the published rows
beside ours, with what differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.params import StudyParams
from pipelines.report.figures import mean_std
from pipelines.report.levels import PAIRS, level_baselines, level_runs, strongest_baseline
from pipelines.report.verdicts import Claim, baseline_note, claim, seed_values

PROTOCOLS = {"Future": ("test", "test_rmse"), "Domain": ("domain", "test_domain_rmse")}  # baseline split, key
# Wang et al. 2022 (ICML), rotation smoke plumes, RMSE Future / Domain, as the authors' blog reports them
PUBLISHED = {"rgcnn": ("RGroup", 0.73, 0.82), "rsteer": ("RSteer", 0.67, 0.80)}
DIFFERENCES = (  # from the authors' run_model.py (Rose-STL-Lab/Approximately-Equivariant-Nets)
    "resolution: published 64 x 64 model input; ours smoke.resolution cells per axis",
    "frames: published tasks (buoyancy, rotation) of 250 frames: train 0-159, valid 160-199, Future "
    "200-249, Domain frames 0-99 of 10 held-out tasks; ours smoke.keep_start..keep_stop split 70 / 15 / 15 % "
    "in time, Domain the non-overlapping windows of each held-out ladder's kept frames",
    "input / output lengths: published 10 input frames, trained on 6-step rollouts and tested on 20-step "
    "rollouts; ours smoke.input_frames in, smoke.output_frames out for valid and both tests",
    "normalisation: ours train.smoke.normalise with the training store's statistics, RMSE in physical "
    "units (the published RMSE's units were not checked here)",
    "training size: published 25 tasks (buoyancy x rotation) per model; ours the 4 directions of one "
    "level's ladder (1 distinct simulation at E_0)",
    "symmetry breaking: published one rotation dataset; ours the levels E_i of a buoyancy ladder",
)



def _values(seeds: dict[int, dict], key: str) -> list[float]:
    """``key`` of every seed's run metrics that has it (a run from before the Domain protocol has not)."""
    return [v for s in seeds.values() if (v := s["train"].get(key)) is not None]


def _sizes(models: dict[str, dict[int, dict]], protocol: str) -> str:
    """Distinct simulations / windows behind a protocol's numbers at one level (the same for every run)."""
    for seeds in models.values():
        for s in seeds.values():
            m = s["train"]
            if protocol == "Future" and "test_distinct_simulations" in m:
                return f"{m['test_distinct_simulations']} / {m['test_distinct_windows']}"
            if protocol == "Domain" and "domain_distinct_simulations" in m:
                return f"{m['domain_distinct_simulations']} / {m['domain_distinct_windows']}"
    return "—"


def domain_claims(runs: dict[int, dict], baselines: dict[int, dict]) -> list[Claim]:
    """Per level and pair "relaxed has lower Domain RMSE than strict", gated on the level's strongest
    Domain baseline and the seeds, like every claim."""
    out = []
    for level in sorted(runs):
        models, base = runs[level], strongest_baseline(baselines.get(level, {}), "domain")
        for relaxed, strict in PAIRS:
            text = f"E_{level} Domain: {relaxed} has lower RMSE on unseen simulations than {strict}"
            values = [seed_values(models, m, lambda s: s["train"].get("test_domain_rmse"))
                      if m in models else {} for m in (relaxed, strict)]  # fmt: skip
            if not all(values):
                out.append(
                    Claim(text, word="not measured", detail=f"no Domain score of {relaxed} or {strict}")
                )
            elif base is None:
                out.append(Claim(text, word="inconclusive (no baseline)", detail="no Domain baseline"))
            else:
                out.append(claim(text, values[0], values[1], base[1]))
    return out


def domain_notes(runs: dict[int, dict], baselines: dict[int, dict]) -> list[str]:
    """Per level, which models beat the strongest Domain baseline and which do not (plainly)."""
    lines = []
    for level in sorted(runs):
        scored = {m: {k: s for k, s in seeds.items() if "test_domain_rmse" in s["train"]}
                  for m, seeds in runs[level].items()}  # fmt: skip
        scored = {m: seeds for m, seeds in scored.items() if seeds}
        if scored:  # the Domain score is test_domain_rmse: metric "domain_rmse" under the "test" prefix
            base = strongest_baseline(baselines.get(level, {}), "domain")
            note = baseline_note(scored, "domain_rmse", base)
            lines.append(
                f"- E_{level} Domain: " + note.replace("Strongest test baseline", "strongest baseline")
            )
    return lines


def protocol_table(runs: dict[int, dict], baselines: dict[int, dict]) -> list[str]:
    """Markdown: per level and protocol, distinct simulations / windows, baselines, each model."""
    models = sorted({m for level in runs.values() for m in level})
    names = sorted({n for b in baselines.values() for split in ("test", "domain") for n in b.get(split, {})})
    lines = ["| level | protocol | distinct simulations / windows | "
             + " | ".join([f"baseline: {n}" for n in names] + models) + " |"]  # fmt: skip
    lines.append("|" + "---|" * (3 + len(names) + len(models)))
    for level in sorted(runs):
        for protocol, (split, key) in PROTOCOLS.items():
            scores = baselines.get(level, {}).get(split, {})
            cells = [f"{scores[n]['rmse']:.4g}" if n in scores else "—" for n in names]
            for model in models:
                values = [
                    v for s in runs[level].get(model, {}).values() if (v := s["train"].get(key)) is not None
                ]
                m, sd = mean_std(values)
                cells.append(f"{m:.4g} ± {sd:.2g} ({len(values)})" if values else "—")
            sizes = _sizes(runs[level], protocol)
            lines.append(f"| E_{level} | {protocol} | {sizes} | " + " | ".join(cells) + " |")
    return lines


def published_table(runs: dict[int, dict]) -> list[str]:
    """The published rows (Wang et al. 2022 via the blog) beside ours at every trained level."""
    lines = ["| model | source | Future RMSE | Domain RMSE |", "|---|---|---|---|"]
    for model, (name, future, domain) in PUBLISHED.items():
        lines.append(f"| {model} ({name}) | Wang et al. 2022 (blog) | {future:.2f} | {domain:.2f} |")
        for level in sorted(runs):
            cells = []
            for _, key in PROTOCOLS.values():
                values = [
                    v for s in runs[level].get(model, {}).values() if (v := s["train"].get(key)) is not None
                ]
                cells.append(f"{mean_std(values)[0]:.4g} ({len(values)} seeds)" if values else "—")
            lines.append(f"| {model} | ours, E_{level} | {cells[0]} | {cells[1]} |")
    return lines


def domain_section(params: StudyParams, metrics_dir: Path) -> tuple[list[str], list[Claim], dict[str, Any]]:
    """(Markdown lines, claims for the report's family, summary numbers); none without Domain stores."""
    if not params.smoke.domain.ladder_starts:
        return [], [], {}
    runs, baselines = level_runs(params, metrics_dir), level_baselines(metrics_dir)
    md = ["## smoke — Future and Domain test protocols (Wang et al. 2022)", "",
          "Future: the later frames of the training simulations (the test split). Domain: the windows "
          f"that share no frame of the held-out buoyancy ladders {params.smoke.domain.ladder_starts} "
          "(smoke.domain), simulations no run trained on, normalised with the training store's statistics. "
          "Cells: RMSE mean ± sd over seeds (n seeds); distinct simulations count a simulation's rotated "
          "copies once, distinct windows likewise (Future windows overlap in time).", ""]  # fmt: skip
    if not runs:
        return md + ["No smoke run has finished (stage `train`)."], [], {}
    md += protocol_table(runs, baselines) + [""] + domain_notes(runs, baselines)
    md += ["", "### Published rows beside ours", ""]
    md += published_table(runs) + ["", "What differs:", ""] + [f"- {d}" for d in DIFFERENCES] + [""]
    summary = {
        f"E{level}": {
            protocol: {model: mean_std(values)[0] for model, seeds in runs[level].items()
                       if (values := _values(seeds, key))}  # no NaN in summary.json
            for protocol, (_, key) in PROTOCOLS.items()
        }
        for level in sorted(runs)
    }  # fmt: skip
    return md, domain_claims(runs, baselines), summary
