"""The top of the report (issue 18 items 1 and 6): plate verdicts, model-domain warning, ranked
hit list, effect map, one colour per class and condition, CSV downloads, provenance last."""

from __future__ import annotations

import colorsys
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hcs.errors import InputError
from hcs.report import build_report, load_run
from hcs.report.builder import build_context, render
from hcs.report.findings import hit_table, plate_verdicts
from hcs.stats.qc import z_prime

sys.path.insert(0, str(Path(__file__).parent))
from test_report import make_run  # noqa: E402


@pytest.fixture(scope="module")
def run96(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("find96"))


@pytest.fixture(scope="module")
def bad_controls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The positive control kills 12 % of the cells, the negative 10 %: Z' far below 0."""
    return make_run(tmp_path_factory.mktemp("bad"), positive=0.12)


def _section(ctx: dict, sid: str) -> dict:
    return next(s for s in ctx["sections"] if s["id"] == sid)


def _blocks(blocks: list[dict]) -> list[dict]:
    out = []
    for b in blocks:
        out.append(b)
        out += _blocks(b.get("blocks", []))
    return out


def _recomputed_z(run: Path, readout: str) -> float:
    w = pd.read_parquet(run / "wells.parquet")
    w = w[w["usable"]]
    pos = w.loc[w["role"] == "positive_control", readout].to_numpy(float)
    neg = w.loc[w["role"] == "negative_control", readout].to_numpy(float)
    return z_prime(pos, neg)


def test_verdict_good_and_unusable(run96: Path, bad_controls: Path) -> None:
    good = plate_verdicts(pd.read_parquet(run96 / "stats.parquet"),
                          pd.read_parquet(run96 / "wells.parquet"))
    assert [v["plate"] for v in good] == ["P1"] and good[0]["verdict"] == "good"
    assert good[0]["readout"] == "freq_live"  # the first QC readout
    assert good[0]["z_prime"] == pytest.approx(_recomputed_z(run96, "freq_live"))
    bad = plate_verdicts(pd.read_parquet(bad_controls / "stats.parquet"),
                         pd.read_parquet(bad_controls / "wells.parquet"), "dead")
    z = _recomputed_z(bad_controls, "freq_dead")
    assert z < 0 and bad[0]["verdict"] == "unusable" and bad[0]["readout"] == "freq_dead"
    assert bad[0]["z_prime"] == pytest.approx(z)
    assert f"Z' = {z:.3g}" in bad[0]["text"] and "12 positive, 24 negative" in bad[0]["text"]
    page = render(build_context(load_run(bad_controls), gallery=False))
    assert 'data-verdict="unusable"' in page and 'data-verdict="good"' not in page


def test_qc_readout_unknown_is_an_error(run96: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--qc-readout nuclei: no plate QC.*freq_live, freq_dead"
                       ", n_detected"):
        build_report(run96, tmp_path / "r.html", qc_readout="nuclei")
    assert not (tmp_path / "r.html").exists()
    res = subprocess.run([sys.executable, "-m", "hcs", "report", str(run96), "-o",
                          str(tmp_path / "r.html"), "--qc-readout", "nuclei"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "--qc-readout nuclei" in res.stderr and not (tmp_path / "r.html").exists()


def test_hit_list_ranked_with_the_threshold(run96: Path) -> None:
    stats = pd.read_parquet(run96 / "stats.parquet")
    hits = hit_table(stats)
    comp = stats[stats["kind"] == "comparison"]
    assert len(hits) == len(comp) == 12 and list(hits["rank"]) == list(range(1, 13))
    p = hits["p_adj"].to_numpy(float)
    assert (np.diff(p) >= 0).all()
    for a, b in zip(hits.itertuples(), hits.iloc[1:].itertuples(), strict=False):
        if a.p_adj == b.p_adj:  # ties: the larger effect first
            assert abs(a.diff) >= abs(b.diff)
    assert hits["hit"].sum() == (comp["p_adj"] < 0.05).sum()
    assert hits.iloc[0]["condition"] == "staurosporine"
    ctx = build_context(load_run(run96), gallery=False)
    find = _section(ctx, "findings")
    assert ctx["sections"][0]["id"] == "findings"
    texts = [b["text"] for b in _blocks(find["blocks"]) if b["type"] == "text"]
    assert any("adjusted p < 0.05" in t and "12 of 12" in t for t in texts)
    table = next(b for b in _blocks(find["blocks"]) if b["type"] == "table")
    assert [r[1]["text"] for r in table["rows"]] == list(hits["condition"])


def test_effect_map_signed_with_stars(run96: Path) -> None:
    ctx = build_context(load_run(run96), gallery=False)
    fig = json.loads(ctx["figures"]["effect-map"])
    hm = fig["data"][0]
    assert hm["zmid"] == 0 and hm["zmin"] == -hm["zmax"]
    stats = pd.read_parquet(run96 / "stats.parquet")
    comp = stats[stats["kind"] == "comparison"]
    assert hm["x"] == ["live", "dead"]
    for i, cond in enumerate(hm["y"]):
        for j, col in enumerate(("freq_live", "freq_dead")):
            row = comp[(comp["condition"] == cond) & (comp["readout"] == col)].iloc[0]
            z = hm["z"][i][j]
            assert np.sign(z) == np.sign(row["hedges_g"])
            assert abs(z) == pytest.approx(min(abs(row["hedges_g"]), hm["zmax"]))
            assert hm["text"][i][j] == row["stars"]


def _colour_of(trace: dict) -> str | None:
    return (trace.get("marker") or {}).get("color") or (trace.get("line") or {}).get("color")


def test_one_colour_per_class_and_condition(run96: Path) -> None:
    ctx = build_context(load_run(run96), gallery=False)
    figs = {k: json.loads(v) for k, v in ctx["figures"].items()}
    by_class: dict[str, set[str]] = {}
    by_cond: dict[str, set[str]] = {}
    for fid, fig in figs.items():
        for t in fig["data"]:
            if t.get("name") in ("live", "dead") and _colour_of(t):
                by_class.setdefault(t["name"], set()).add(_colour_of(t))
            elif fid.startswith("cond-") and t["type"] == "box":
                by_cond.setdefault(t["name"], set()).add(_colour_of(t))
    # class traces in the compositions and the dose curves
    assert set(by_class) == {"live", "dead"} and all(len(v) == 1 for v in by_class.values())
    assert by_class["live"] != by_class["dead"]
    assert {c["name"]: c["colour"] for c in ctx["classes"]} == \
        {k: next(iter(v)) for k, v in by_class.items()}
    assert all(len(v) == 1 for v in by_cond.values()) and len(by_cond) == 7
    colours = {k: next(iter(v)) for k, v in by_cond.items()}
    assert len(set(colours.values())) == 7
    # the dose series: one hue, darker with dose
    series = ["drug 0.1 uM", "drug 0.3 uM", "drug 0.5 uM", "drug 2.0 uM", "drug 10.0 uM"]

    def lightness(c: str) -> float:
        r, g, b = (int(v) / 255 for v in re.findall(r"\d+", c))
        return colorsys.rgb_to_hls(r, g, b)[1]

    light = [lightness(colours[s]) for s in series]
    assert light == sorted(light, reverse=True) and len(set(light)) == 5


def test_csv_downloads_embedded(run96: Path) -> None:
    ctx = build_context(load_run(run96), gallery=False)
    assert set(ctx["downloads"]) == {"wells", "stats", "hits"}
    page = render(ctx)
    for name, expected in (("wells", pd.read_parquet(run96 / "wells.parquet")),
                           ("hits", hit_table(pd.read_parquet(run96 / "stats.parquet")))):
        m = re.search(rf'<textarea hidden readonly id="csv-{name}"[^>]*>(.*?)</textarea>', page,
                      re.S)
        assert m, name
        import html

        got = pd.read_csv(io.StringIO(html.unescape(m.group(1))))
        assert list(got.columns) == list(expected.columns) and len(got) == len(expected)
        assert got["well" if name == "wells" else "condition"].astype(str).tolist() == \
            expected["well" if name == "wells" else "condition"].astype(str).tolist()
    assert page.count('data-csv="hits"') == 2 and page.count('data-csv="stats"') == 2


def test_csv_of_evil_names_cannot_escape(tmp_path: Path) -> None:
    from test_report import EVIL

    run = make_run(tmp_path / "evil", evil=True)
    page = render(build_context(load_run(run), gallery=False))
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_domain_warning_and_provenance_last(run96: Path, tmp_path: Path) -> None:
    run = tmp_path / "dom"
    shutil.copytree(run96, run)
    (run / "domain.json").write_text(json.dumps({
        "model": "livedead-ldc", "status": "off_domain", "summary": "31 of 48 fields outside",
        "fields": 48, "fields_off": 31, "evidence": {}, "hint": "train on your own labels"}))
    ctx = build_context(load_run(run), gallery=False)
    warn = [b for b in _section(ctx, "findings")["blocks"] if b["type"] == "warning"]
    assert len(warn) == 1 and warn[0]["text"] == "31 of 48 fields outside"
    page = render(ctx)
    assert 'data-warning="domain"' in page and "train on your own labels" in page
    assert ctx["sections"][-1]["id"] == "provenance" and ctx["sections"][-1]["collapsed"]
    m = re.search(r'<section id="provenance"[^>]*>\s*<details>', page)
    assert m and "<details open" not in page
    (run / "domain.json").write_text(json.dumps({"status": "in_domain", "summary": "fine"}))
    page = render(build_context(load_run(run), gallery=False))
    assert 'data-warning="domain"' not in page
    (run / "domain.json").write_text("{not json")
    with pytest.raises(InputError, match="domain.json: not valid JSON"):
        load_run(run)


def test_analyze_refuses_an_unknown_qc_readout_before_any_stage(tmp_path: Path) -> None:
    layout = Path(__file__).resolve().parents[1] / "plate_layouts" / "livedead_dose_series.csv"
    out = tmp_path / "analysis"
    res = subprocess.run([sys.executable, "-m", "hcs", "analyze", str(tmp_path / "export"),
                          "-o", str(out), "-l", str(layout), "--assay", "livedead",
                          "--qc-readout", "nuclei"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "--qc-readout nuclei: not a readout" in res.stderr and "freq_dead" in res.stderr
    assert not out.exists()
