"""``hcs demo``: simulate a screen, analyse it with a shipped model, and check it against the truth.

The demo is ``hcs simulate`` (a real Opera Phenix / Harmony V5 export with known truth) followed
by every stage of ``hcs analyze`` on the embedded local Dask cluster, plus one stage that compares
the result with the simulation's truth (:mod:`hcs.analyze.recovery`): it writes ``DIR/demo.json``
and adds a short ``truth_recovery`` entry to the run's ``run.json``, so the report's provenance
table shows it. Like ``hcs analyze`` it skips stages that are current, so a second call only
re-checks fingerprints.

``--assay cic`` simulates the ARHGAP36 truncation screen of the AIM-CICs paper
(``plate_layouts/arhgap36_truncations.csv``) and analyses it with ``models/cic-sim``;
``--assay livedead`` the doxorubicin dose series (``plate_layouts/livedead_dose_series.csv``)
with ``models/livedead-sim``; ``--assay mitosis`` a mitotic-arrest screen imaged as z-stacks of
16 planes (``plate_layouts/mitosis_arrest.csv``: DMSO vs nocodazole) with the x/y/z projection
ensemble ``models/mitosis-sim-xyz``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hcs.analyze.manifest import Pipeline, file_sha256, tree_fingerprint
from hcs.analyze.pipeline import AnalyzeResult, analyze
from hcs.atomic import atomic_write_text
from hcs.errors import InputError
from hcs.params import AnalyzeParams, ReportParams, RunParams

__all__ = ["DEMOS", "DemoResult", "DemoSpec", "run_demo"]

_ROOT = Path(__file__).resolve().parents[2]
#: Version of demo.json's content: a new version re-runs the truth-recovery stage.
RECOVERY_FORMAT = 5


@dataclass(frozen=True)
class DemoSpec:
    """What one demo simulates: layout, size, and the model that analyses it."""

    assay: str
    layout: str
    model: str
    wells_per_condition: int | None
    fields: int
    size: int
    z_planes: int = 1
    z_step_um: float = 1.0

    def layout_path(self) -> Path:
        return _ROOT / self.layout


#: The demos and their default sizes (chosen so the whole demo runs in < 10 min on 2 cores
#: and the built-in effects are recovered; see README).
DEMOS: dict[str, DemoSpec] = {
    "cic": DemoSpec("cic", "plate_layouts/arhgap36_truncations.csv", "cic-sim",
                    wells_per_condition=12, fields=1, size=1080),
    "livedead": DemoSpec("livedead", "plate_layouts/livedead_dose_series.csv", "livedead-sim",
                         wells_per_condition=None, fields=1, size=1080),
    "mitosis": DemoSpec("mitosis", "plate_layouts/mitosis_arrest.csv", "mitosis-sim-xyz",
                        wells_per_condition=10, fields=1, size=1080, z_planes=16),
}


@dataclass
class DemoResult:
    """The analysis (``analysis``), the recovery summary (``recovery``) and the wall time."""

    analysis: AnalyzeResult
    recovery: dict[str, Any]
    demo_json: Path
    seconds: float


def _simulate_step(pipe: Pipeline, sim_dir: Path, spec: DemoSpec, layout: Path,
                   wells_per_condition: int | None, fields: int, size: int, seed: int,
                   workers: int | None, progress: bool) -> None:
    from hcs.synth import simulate_plate

    params = {"assay": spec.assay, "format": "harmony", "schema": "v5", "fields": fields,
              "size": size, "seed": seed, "wells_per_condition": wells_per_condition,
              **({"z_planes": spec.z_planes, "z_step_um": spec.z_step_um}
                 if spec.z_planes > 1 else {})}
    pipe.step("simulate", {"layout": file_sha256(layout)}, params,
              lambda: tree_fingerprint(sim_dir),
              lambda: simulate_plate(sim_dir, layout, spec.assay, fmt="harmony", fields=fields,
                                     size=size, seed=seed,
                                     wells_per_condition=wells_per_condition, schema="v5",
                                     overwrite=True, progress=progress, workers=workers,
                                     z_planes=spec.z_planes, z_step_um=spec.z_step_um))


def _compact(summary: dict[str, Any]) -> dict[str, Any]:
    """The short form of a recovery summary shown in the report (run.json ``truth_recovery``)."""
    freq = {k: f"r {v['r']:.3f}, MAE {v['mae']:.4f} (true mean {v['mean_true']:.4f}, "
               f"estimated {v['mean_est']:.4f})" if v["r"] is not None and v["mae"] is not None
            else "n/a" for k, v in summary["frequencies"].items()}
    return {
        "file": "demo.json", "reference": summary["reference"],
        "per_well_vs_truth": freq,
        "built_in_comparisons": f"{summary['built_in']} with |expected difference| >= "
                                f"{summary['min_effect']}; {summary['built_in_shown_by_truth']}"
                                " significant from the true counts at this plate size",
        "recovered": f"{summary['recovered']}: " + "; ".join(summary["recovered_list"]),
        "missed": "; ".join(summary["missed_list"]) or "none",
        "wrong_direction": "; ".join(summary["wrong_direction_list"]) or "none",
        "dose_response": {f"{d['construct']} {d['readout']}": f"EC50 {d['est_ec50']} "
                          f"{d['dose_unit']} ({d['est_status']}); true counts: "
                          f"{d['truth_ec50']} ({d['truth_status']})"
                          for d in summary.get("dose_response", [])} or "none",
        "smaller_built_in_differences_found": "; ".join(summary["small_recovered_list"])
                                              or "none",
        "significant_without_built_in_effect": "; ".join(summary["spurious_list"]) or "none",
    }


def _inject_run_json(run_dir: Path, compact: dict[str, Any]) -> None:
    """Put ``truth_recovery`` into run.json (only when it differs, so the report stays current)."""
    path = run_dir / "run.json"
    run = json.loads(path.read_text())
    if run.get("truth_recovery") == compact:
        return
    run["truth_recovery"] = compact
    atomic_write_text(path, json.dumps(run, indent=2, default=str))


def run_demo(
    out: str | Path = "reports/demo",
    assay: str = "cic",
    *,
    model: str | Path | None = None,
    wells_per_condition: int | None = -1,
    fields: int | None = None,
    size: int | None = None,
    seed: int = 0,
    run: RunParams | None = None,
    gallery: bool = True,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Simulate, analyse and check one demo screen (see the module docstring).

    Parameters
    ----------
    out
        Demo folder: ``sim/`` (export + truth), the ``hcs analyze`` folder contents,
        ``demo.json`` (truth recovery) and ``report.html``.
    assay
        ``cic``, ``livedead`` or ``mitosis`` (:data:`DEMOS`).
    model
        Model folder (default: the demo's shipped model).
    wells_per_condition, fields, size
        Plate size (default: the demo's, :data:`DEMOS`; ``wells_per_condition=None`` means
        every well of the layout).
    seed
        Simulation seed.
    run, gallery, force, progress, log
        As :func:`hcs.analyze.analyze`.

    Returns
    -------
    DemoResult
    """
    if assay not in DEMOS:
        raise InputError(f"no demo for assay {assay!r}; choose one of {', '.join(DEMOS)}")
    spec = DEMOS[assay]
    wpc = spec.wells_per_condition if wells_per_condition == -1 else wells_per_condition
    fields = fields or spec.fields
    size = size or spec.size
    folder = Path(out)
    sim_dir = folder / "sim"
    layout = spec.layout_path()
    opts = run or RunParams()
    recovery: dict[str, Any] = {}
    t0 = time.perf_counter()

    def simulate(pipe: Pipeline, paths: dict[str, Path]) -> None:
        _simulate_step(pipe, sim_dir, spec, layout, wpc, fields, size, seed, opts.workers,
                       progress)

    def check(pipe: Pipeline, paths: dict[str, Path]) -> None:
        from hcs.analyze.recovery import recovery_summary

        truth = sim_dir / "truth" / "wells.parquet"
        demo_json = folder / "demo.json"

        def action() -> None:
            s = recovery_summary(truth, paths["wells"], paths["stats"], spec.assay)
            s["simulation"] = {"layout": spec.layout, "wells_per_condition": wpc,
                               "fields": fields, "size": size, "seed": seed}
            atomic_write_text(demo_json, json.dumps(s, indent=2))

        pipe.step("truth recovery", {"truth": file_sha256(truth),
                                     "wells": file_sha256(paths["wells"]),
                                     "stats": file_sha256(paths["stats"])},
                  {"alpha": 0.05, "min_effect": 0.02, "format": RECOVERY_FORMAT},
                  lambda: file_sha256(demo_json), action)
        recovery.update(json.loads(demo_json.read_text()))
        _inject_run_json(paths["run"], _compact(recovery))

    params = AnalyzeParams(assay=spec.assay, layout=str(layout), model=str(model or spec.model),
                           force=force, run=opts, report=ReportParams(gallery=gallery))
    result = analyze(sim_dir / "export", folder, params, progress=progress, log=log,
                     before_convert=simulate, before_report=check)
    return DemoResult(result, recovery, folder / "demo.json", time.perf_counter() - t0)
