"""`hcs convert` against hostile inputs (issue 15, items 1, 3, 4, 8, 11 and the scanR Image ID of
item 10): each test starts from the issue's reproduction on a small simulated plate, asserts the
refusal (exit 2, one ``error:`` line naming the file) or the correct result, and that the input
tree is byte for byte unchanged (sha256 of every file before and after)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from hcs.cli import app
from hcs.io.omezarr import open_plate

REPO = Path(__file__).resolve().parents[1]
LAYOUT = REPO / "plate_layouts" / "arhgap36_truncations.csv"


def tree_sums(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (symlinks: their target text), by relative path."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


def hcs(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "hcs", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=REPO)


def one_error(res: subprocess.CompletedProcess, *needles: str | Path) -> str:
    """Exit 2, no traceback, exactly one ``error:`` line, which contains every needle."""
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr
    for n in needles:
        assert str(n) in errors[0], errors[0]
    return errors[0]


def simulate(out: Path, fmt: str = "harmony") -> Path:
    from hcs.synth import simulate_plate

    simulate_plate(out, LAYOUT, "cic", fmt=fmt, fields=1, size=256, wells_per_condition=1,
                   progress=False, workers=1)
    return out / "export"


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate(tmp_path_factory.mktemp("sim") / "s").parent


@pytest.fixture
def export(sim_dir: Path, tmp_path: Path) -> Path:
    """A fresh copy of the simulated Harmony export (4 wells, 3 channels, 256 px)."""
    return Path(shutil.copytree(sim_dir / "export", tmp_path / "e"))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name)


# --- item 1: --overwrite never replaces an input or a folder hcs did not write -----------------


def test_overwrite_refuses_the_export_itself_and_its_parent(export: Path, tmp_path: Path) -> None:
    before = tree_sums(tmp_path)
    one_error(hcs("convert", export, export, "--overwrite"), export, "input")
    # SRC = export/Images, OUT = the export that contains it
    one_error(hcs("convert", export / "Images", export, "--overwrite"), export, "input")
    # OUT inside SRC, existing: refused even though it is not an input file itself
    one_error(hcs("convert", export, export / "Images", "--overwrite"), export / "Images")
    assert tree_sums(tmp_path) == before


def test_overwrite_refuses_a_folder_hcs_did_not_write(export: Path, tmp_path: Path) -> None:
    notes = tmp_path / "plate.ome.zarr"
    notes.mkdir()
    (notes / "notes.txt").write_text("irreplaceable")
    before = tree_sums(tmp_path)
    one_error(hcs("convert", export, notes, "--overwrite"), notes, "not an OME-Zarr plate")
    assert tree_sums(tmp_path) == before


def test_overwrite_replaces_an_hcs_plate_but_not_one_with_foreign_files(
    export: Path, tmp_path: Path
) -> None:
    out = tmp_path / "p.ome.zarr"
    ex = tree_sums(export)
    assert hcs("convert", export, out).returncode == 0
    attrs = json.loads((out / "zarr.json").read_text())["attributes"]["hcs"]
    assert attrs["written_by"] == "hcs"
    res = hcs("convert", export, out, "--overwrite")
    assert res.returncode == 0, res.stderr
    assert open_plate(out).wells == ["A01", "A02", "A03", "A04"]
    # a plate of an earlier hcs version (no written_by) is still recognised by its provenance
    meta = json.loads((out / "zarr.json").read_text())
    del meta["attributes"]["hcs"]["written_by"]
    (out / "zarr.json").write_text(json.dumps(meta))
    assert hcs("convert", export, out, "--overwrite").returncode == 0
    # a user file dropped into the plate: the folder is no longer provably hcs's
    (out / "my-notes.txt").write_text("keep")
    before = tree_sums(tmp_path)
    one_error(hcs("convert", export, out, "--overwrite"), out, "my-notes.txt")
    assert tree_sums(tmp_path) == before
    # an OME-Zarr plate written by another tool (no hcs provenance) is not replaced either
    (out / "my-notes.txt").unlink()
    meta = json.loads((out / "zarr.json").read_text())
    meta["attributes"].pop("hcs")
    (out / "zarr.json").write_text(json.dumps(meta))
    one_error(hcs("convert", export, out, "--overwrite"), out, "not written by hcs")
    assert tree_sums(export) == ex


def test_simulate_overwrite_refuses_an_export(export: Path, tmp_path: Path) -> None:
    before = tree_sums(tmp_path)
    res = hcs("simulate", export, "--layout", LAYOUT, "--assay", "cic", "--fields", "1",
              "--size", "64", "--wells-per-condition", "1", "-q", "--overwrite")
    one_error(res, export, "not an hcs simulation")
    assert tree_sums(tmp_path) == before


# --- item 3: partials of killed converts ---------------------------------------------------------

_SLOW_CONVERT = """
import sys, time
import hcs.io.convert as c
orig = c._write_field
def slow(*a, **k):
    out = orig(*a, **k)
    time.sleep(60)  # killed here, after the first field is on disk
    return out
c._write_field = slow
from hcs.cli import app
app(sys.argv[1:], prog_name="hcs")
"""


def test_sigkilled_convert_partial_is_removed_by_the_next_convert(
    export: Path, tmp_path: Path
) -> None:
    out = tmp_path / "p.ome.zarr"
    before = tree_sums(export)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_CONVERT, "convert", str(export),
                             str(out), "--workers", "1"], env=env, stderr=subprocess.DEVNULL)
    partial = tmp_path / f"p.ome.zarr.partial-{proc.pid}"
    deadline = time.monotonic() + 60
    while not list(partial.glob("A/*/0/0")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(partial.glob("A/*/0/0")), "the convert never started writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert partial.is_dir() and not out.exists()
    # a folder that merely looks like a partial, without hcs's marker, is named and kept
    fake = tmp_path / "p.ome.zarr.partial-999999999"
    fake.mkdir()
    (fake / "data.txt").write_text("not hcs's")
    # a partial of a live process (this one) is named and kept
    from hcs.records import process_record

    live = tmp_path / f"p.ome.zarr.partial-{os.getpid()}"
    live.mkdir()
    (live / ".hcs-partial.json").write_text(json.dumps({**process_record(), "written_by": "hcs"}))
    res = hcs("convert", export, out)
    assert res.returncode == 0, res.stderr
    assert not partial.exists()
    lines = res.stderr.splitlines()  # one "warning:" line each, naming the folder and why
    assert f"warning: {fake}: left over from an earlier run, not removed (hcs cannot prove it " \
        "wrote it)" in lines
    assert any(line.startswith(f"warning: {live}: ") and "still running" in line
               for line in lines)
    assert leftovers(tmp_path) == sorted([fake.name, live.name])
    assert open_plate(out).wells == ["A01", "A02", "A03", "A04"]
    assert tree_sums(export) == before


def _plate_sums(plate: Path) -> dict[str, str]:
    """Checksums of a plate without its root metadata (which holds the conversion time)."""
    return {k: v for k, v in tree_sums(plate).items() if k != "zarr.json"}


@pytest.mark.slow  # about 45 s: four kills and nine converts
def test_sigkill_at_random_points_leaves_previous_or_complete_new_plate(
    export: Path, tmp_path: Path
) -> None:
    """Property: ``convert --overwrite`` killed at a random moment, then run again, leaves the
    previous plate or the complete new one (never a mix), and the rerun the complete new one."""
    ref, out = tmp_path / "ref.ome.zarr", tmp_path / "p.ome.zarr"
    inputs = tree_sums(export)
    t0 = time.monotonic()
    assert hcs("convert", export, ref).returncode == 0
    full = time.monotonic() - t0  # a whole convert, start-up included
    new = _plate_sums(ref)
    shutil.rmtree(ref)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rng = np.random.default_rng(15)
    seen = set()
    for delay in rng.uniform(0.4 * full, 1.05 * full, size=4):
        shutil.rmtree(out, ignore_errors=True)
        assert hcs("convert", export, out, "--dtype", "float32").returncode == 0
        previous = tree_sums(out)
        proc = subprocess.Popen([sys.executable, "-m", "hcs", "convert", str(export), str(out),
                                 "--overwrite", "--workers", "1"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists() and tree_sums(out) == previous:
            seen.add("previous")
        elif out.exists():
            assert _plate_sums(out) == new  # complete, never a mix
            seen.add("new")
        else:  # killed between the two renames of the swap
            assert list(tmp_path.glob("p.ome.zarr.old-*"))
            seen.add("swap")
        res = hcs("convert", export, out, "--overwrite")
        assert res.returncode == 0, res.stderr
        assert _plate_sums(out) == new and not leftovers(tmp_path)
    print("states after kill:", sorted(seen))
    assert seen  # which states were hit depends on the machine's speed
    assert tree_sums(export) == inputs


def test_swap_killed_between_renames_restores_the_previous_plate(
    export: Path, tmp_path: Path
) -> None:
    out = tmp_path / "p.ome.zarr"
    assert hcs("convert", export, out).returncode == 0
    sums = tree_sums(out)
    old = tmp_path / "p.ome.zarr.old-999999999"  # killed after OUT -> OUT.old-<pid>
    out.rename(old)
    res = hcs("convert", export, out)  # no --overwrite: the restored plate is not replaced
    one_error(res, out, "exists; pass --overwrite")
    assert "restored from p.ome.zarr.old-999999999" in res.stderr
    assert tree_sums(out) == sums and not leftovers(tmp_path)


def test_half_deleted_swapped_out_plate_is_removed_only_with_its_swap_record(
    export: Path, tmp_path: Path
) -> None:
    """A writer killed while deleting the plate it replaced (``OUT.old-<pid>``, half deleted,
    so its content proves nothing) leaves a swap record; the next write removes the old plate
    when the record names it and its writer is dead, and keeps (and names) one without."""
    from hcs.records import process_record

    out = tmp_path / "p.ome.zarr"
    assert hcs("convert", export, out).returncode == 0
    sums = tree_sums(out)
    for pid, recorded in ((999999991, True), (999999992, False)):  # pids of no process
        old = tmp_path / f"p.ome.zarr.old-{pid}"
        shutil.copytree(out, old)
        (old / "zarr.json").unlink()  # the deletion was cut short: no longer a plate
        if recorded:
            rec = {**process_record(), "pid": pid, "written_by": "hcs", "old": old.name}
            (tmp_path / f".p.ome.zarr.swap-{pid}.json").write_text(json.dumps(rec))
    res = hcs("convert", export, out, "--overwrite")
    assert res.returncode == 0, res.stderr
    assert tree_sums(out).keys() == sums.keys()
    assert leftovers(tmp_path) == ["p.ome.zarr.old-999999992"]  # unproven: kept and named
    assert "p.ome.zarr.old-999999992" in res.stderr and "cannot prove" in res.stderr
    assert not list(tmp_path.glob(".p.ome.zarr.swap-*"))


# --- item 4: planes the plate dtype cannot hold --------------------------------------------------


@pytest.mark.parametrize("plane", [
    np.linspace(0, 1, 256 * 256, dtype=np.float32).reshape(256, 256),  # float in [0, 1]
    np.arange(-32768, 32768, dtype=np.int32).reshape(256, 256),  # negative int32
    np.full((256, 256), 70000, dtype=np.uint32),  # > 65535
], ids=["float01", "negative-int32", "above-65535"])
def test_plane_the_plate_dtype_cannot_hold_is_an_error(
    export: Path, tmp_path: Path, plane: np.ndarray
) -> None:
    bad = export / "Images" / "r01c02f01p01-ch2sk1fk1fl1.tiff"
    tifffile.imwrite(bad, plane)
    before = tree_sums(tmp_path)
    out = tmp_path / "p.ome.zarr"
    one_error(hcs("convert", export, out), bad, f"{plane.dtype} plane", "uint16")
    assert not out.exists() and not leftovers(tmp_path)
    assert tree_sums(tmp_path) == before


def test_dtype_option_holds_every_plane_exactly(export: Path, tmp_path: Path) -> None:
    bad = export / "Images" / "r01c02f01p01-ch2sk1fk1fl1.tiff"
    floats = np.linspace(0, 1, 256 * 256, dtype=np.float32).reshape(256, 256)
    tifffile.imwrite(bad, floats)
    ref = tifffile.imread(export / "Images" / "r01c01f01p01-ch1sk1fk1fl1.tiff")
    assert ref.dtype == np.uint16
    out = tmp_path / "p.ome.zarr"
    res = hcs("convert", export, out, "--dtype", "float32")
    assert res.returncode == 0, res.stderr
    plate = open_plate(out)
    assert plate.dtype == np.float32
    a02 = np.asarray(plate.field("A02", 0))
    a01 = np.asarray(plate.field("A01", 0))
    np.testing.assert_array_equal(a02[0, 1, 0], floats)  # channel 2 of A02: the float plane
    np.testing.assert_array_equal(a01[0, 0, 0], ref.astype(np.float32))  # uint16 exact


# --- item 8: every file taken from an export resolves inside it ---------------------------------


def test_vendor_symlink_leading_outside_the_export_is_refused(export: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_text("secret")
    (export / "Assaylayout").mkdir()
    link = export / "Assaylayout" / "x.xml"
    link.symlink_to(secret)
    before = tree_sums(tmp_path)
    out = tmp_path / "p.ome.zarr"
    one_error(hcs("convert", export, out), link, "outside the export")
    # --allow-outside is for image files only: metadata is never copied from outside
    one_error(hcs("convert", export, out, "--allow-outside"), link, "outside the export")
    assert not out.exists() and not leftovers(tmp_path)
    assert tree_sums(tmp_path) == before


def test_scanr_descriptor_symlink_leading_outside_is_refused(tmp_path: Path) -> None:
    export = simulate(tmp_path / "sr", fmt="scanr")
    secret = tmp_path / "secret.dat"
    secret.write_bytes(b"secret")
    link = export / "experiment_descriptor.dat"
    link.symlink_to(secret)
    before = tree_sums(tmp_path)
    out = tmp_path / "p.ome.zarr"
    one_error(hcs("convert", export, out, "--plate-format", "96"), link, "outside the export")
    assert not out.exists() and tree_sums(tmp_path) == before


def test_scanr_data_folder_linked_from_outside_needs_allow_outside(tmp_path: Path) -> None:
    export = simulate(tmp_path / "sr", fmt="scanr")
    elsewhere = tmp_path / "elsewhere"
    (export / "data").rename(elsewhere)
    (export / "data").symlink_to(elsewhere)
    before = tree_sums(tmp_path)
    out = tmp_path / "p.ome.zarr"
    one_error(hcs("convert", export, out, "--plate-format", "96"), "'data'", "--allow-outside")
    assert not out.exists() and tree_sums(tmp_path) == before
    # the explicit choice reads the images, but still no metadata file from outside the export
    one_error(hcs("convert", export, out, "--plate-format", "96", "--allow-outside"),
              export / "data" / "metadata.ome.xml", "outside the export")


# --- item 10: scanR OME Image ID against the file name ------------------------------------------


def test_scanr_image_id_contradicting_the_file_name_is_refused(
    scanr_sample: Path, tmp_path: Path
) -> None:
    """The real scanR 3.3 metadata.ome.xml (Image:W14P1, file B2--W00014--P00001--...)."""
    data = tmp_path / "exp" / "data"
    data.mkdir(parents=True)
    xml = (scanr_sample / "scanr-3.3.0-metadata.ome.xml").read_text(encoding="utf-8")
    name = "B2--W00014--P00001--Z00000--T00000--405 nm #1.tif"
    assert f'FileName="{name}"' in xml and 'ID="Image:W14P1"' in xml
    (data / "metadata.ome.xml").write_text(xml, encoding="utf-8")
    tifffile.imwrite(data / name, np.zeros((2048, 2048), np.uint16))
    out = tmp_path / "p.ome.zarr"
    ok = hcs("convert", tmp_path / "exp", out, "--plate-format", "96")
    assert ok.returncode == 0, ok.stderr
    assert open_plate(out).wells == ["B02"]
    # the same file, named for well 15: the metadata and the file disagree
    other = name.replace("W00014", "W00015")
    (data / "metadata.ome.xml").write_text(xml.replace(name, other), encoding="utf-8")
    (data / name).rename(data / other)
    before = tree_sums(tmp_path)
    one_error(hcs("convert", tmp_path / "exp", tmp_path / "q.ome.zarr", "--plate-format", "96"),
              data / other, "W15", "Image:W14P1")
    assert tree_sums(tmp_path) == before


# --- item 11: absurd plate geometry, full disk ---------------------------------------------------


def test_absurd_plate_rows_is_one_line_naming_the_index(export: Path, tmp_path: Path) -> None:
    index = export / "Images" / "Index.idx.xml"
    text = index.read_text(encoding="utf-8")
    assert "<PlateRows>8</PlateRows>" in text
    index.write_text(text.replace("<PlateRows>8</PlateRows>", "<PlateRows>100000</PlateRows>"),
                     encoding="utf-8")
    before = tree_sums(tmp_path)
    one_error(hcs("convert", export, tmp_path / "p.ome.zarr"), index, "PlateRows='100000'")
    assert tree_sums(tmp_path) == before


def test_absurd_scanr_descriptor_columns(tmp_path: Path) -> None:
    from hcs.errors import InputError
    from hcs.io.scanr_descriptor import Descriptor
    from hcs.io.scanr_wells import plate_geometry

    desc = Descriptor(path=tmp_path / "experiment_descriptor.xml", rows=8, columns=100000)
    with pytest.raises(InputError, match=r"experiment_descriptor.xml: format Columns=100000"):
        plate_geometry(desc, None, {}, tmp_path)


def test_full_disk_during_convert_is_one_line_and_leaves_nothing(
    export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zarr.storage._local as local

    calls = {"n": 0}
    real_put = local._put

    def full(path: Path, value: object, exclusive: bool = False) -> int:
        calls["n"] += 1
        if calls["n"] > 3:  # the disk fills up after a few chunks
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_put(path, value, exclusive=exclusive)

    monkeypatch.setattr(local, "_put", full)
    before = tree_sums(tmp_path)
    out = tmp_path / "p.ome.zarr"
    res = CliRunner().invoke(app, ["convert", str(export), str(out), "--workers", "1"])
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.output
    assert str(out) in errors[0] and "No space left on device" in errors[0]
    assert "partial plate was removed" in errors[0]
    assert not out.exists() and not leftovers(tmp_path)
    assert tree_sums(tmp_path) == before


def test_user_errors_turns_enospc_into_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from hcs.cli.app import user_errors

    @user_errors
    def write() -> None:
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "/data/out/wells.parquet")

    @user_errors
    def read_only() -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/ro/plate.ome.zarr")

    @user_errors
    def bug() -> None:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    for func, needle in ((write, "/data/out/wells.parquet: Disk quota exceeded (disk full or"),
                         (read_only, "/mnt/ro/plate.ome.zarr: Read-only file system")):
        with pytest.raises(typer.Exit) as exc:
            func()
        assert exc.value.exit_code == 2
        assert needle in capsys.readouterr().err
    with pytest.raises(OSError):  # anything else is a bug in hcs: the traceback stays
        bug()


# --- the same rule for the other folders hcs replaces: model and Grad-CAM folders ---------------


def test_model_overwrite_replaces_only_a_model_folder(tmp_path: Path) -> None:
    from hcs.classify.explain import _grad_cam_folder_not_ours
    from hcs.errors import InputError
    from hcs.synth.fixtures import save_random_model

    chans = ["membrane", "nucleus", "brightfield"]
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "notes.txt").write_text("irreplaceable")
    before = tree_sums(tmp_path)
    with pytest.raises(InputError, match=r"m: not replaced: not an hcs model folder"):
        save_random_model(folder, "cic", chans)  # always passes overwrite=True
    assert tree_sums(tmp_path) == before
    model = save_random_model(tmp_path / "ok", "cic", chans)
    save_random_model(model, "cic", chans)  # an hcs model folder is replaced
    (model / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="notes.txt"):
        save_random_model(model, "cic", chans)
    assert (model / "notes.txt").read_text() == "mine"
    cams = tmp_path / "cams"
    cams.mkdir()
    (cams / "index.csv").write_text("file\n")
    (cams / "000.png").write_bytes(b"")
    assert _grad_cam_folder_not_ours(cams) is None
    (cams / "notes.txt").write_text("mine")
    assert "notes.txt" in _grad_cam_folder_not_ours(cams)
