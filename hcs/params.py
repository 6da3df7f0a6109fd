"""One typed parameter model per stage: the CLI, ``hcs analyze`` and the library share them.

Each model holds the options of one stage command (not its input and output paths):

- :class:`ConvertParams`: ``hcs convert`` (reading an export, writing the plate);
- :class:`RunParams`: ``hcs run`` (detection and classification, where and how fast it runs);
  :meth:`RunParams.engine_params` makes the workers' :class:`hcs.engine.processor.EngineParams`;
- :class:`AggregateParams`: ``hcs aggregate``;
- :class:`StatsParams`: ``hcs stats`` (choices are ``Literal`` types);
- :class:`ReportParams`: ``hcs report``;
- :class:`AnalyzeParams`: ``hcs analyze``, the assay, layout and model plus one of each above.

A field's name is its option (``fields_per_task`` is ``--fields-per-task``), its description the
option's help; :mod:`hcs.cli.options` builds the commands from them, so an option cannot have two
names or two meanings. A field that appears in several models (``workers``, ``plate_format``,
``layout``) means the same thing in each; ``hcs analyze`` gives every one the same value.
:func:`validate` turns a bad value into one :class:`hcs.errors.InputError` naming the option.

Examples
--------
>>> StatsParams(test="welch").correction
'fdr_bh'
>>> validate(StatsParams, test="welsh")
Traceback (most recent call last):
...
hcs.errors.InputError: --test: input should be 'student' or 'welch' (got 'welsh')
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from hcs.errors import InputError

if TYPE_CHECKING:
    from hcs.engine.processor import EngineParams

__all__ = ["AggregateParams", "AnalyzeParams", "ConvertParams", "ExportParams", "ReportParams",
           "RunParams", "STAGES", "StatsParams", "from_options", "option_name", "options_of",
           "parse_channel_map", "validate"]

M = TypeVar("M", bound=BaseModel)

ExportFormat = Literal["auto", "harmony", "scanr", "tiff-folder"]
Test = Literal["student", "welch"]
Correction = Literal["fdr_bh", "holm", "bonferroni", "none"]
Transform = Literal["none", "logit"]
Blocks = Literal["model", "normalise"]
Measure = Literal["none", "basic", "full"]


def _short(flag: str) -> dict[str, Any]:
    """``json_schema_extra`` giving a field a short flag (``-a``)."""
    return {"short": flag}


def _comma_list(value: Any) -> Any:
    """``"A01,B03"`` or ``["A01", "B03,C04"]`` -> ``("A01", "B03", "C04")``; None stays None."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    out = tuple(p.strip() for item in items for p in str(item).split(",") if p.strip())
    return out or None


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _paths_as_text(cls, data: Any) -> Any:
        """Paths (a model folder, a layout) are accepted where the option takes text."""
        if isinstance(data, dict):
            return {k: os.fspath(v) if isinstance(v, os.PathLike) else v
                    for k, v in data.items()}
        return data


#: Plate dtypes ``hcs convert --dtype`` offers (:data:`hcs.io.convert.PLATE_DTYPES`).
PlateDtype = Literal["uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64"]


class ConvertParams(_Params):
    """How an instrument export is read and written as a plate (``hcs convert``)."""

    format: ExportFormat = Field("auto", description="Export format.")
    pattern: str | None = Field(None, description="File-name pattern for a TIFF-folder export.")
    plate_format: int | None = Field(
        None, gt=0, description="Plate format (96, 384, 1536) when the export omits it.")
    strict: bool = Field(False, description="Fail when any plane is missing.")
    allow_outside: bool = Field(
        False, description="Let the metadata reference files outside the export.")
    ngff: Literal["0.5", "0.4"] = Field("0.5", description="NGFF version: 0.5 (zarr v3) or 0.4 "
                                        "(zarr v2).")
    pixel_size: float | None = Field(
        None, gt=0, description="Pixel size in um, for an export whose metadata lacks it.")
    z_step: float | None = Field(
        None, gt=0, description="Z step in um, for an export whose metadata lacks it.")
    channel_names: tuple[str, ...] | None = Field(
        None, description="Channel names, comma-separated, in the order of the channel key.")
    override_metadata: bool = Field(
        False, description="Let --pixel-size/--z-step/--channel-names replace values the "
        "metadata states.")
    dtype: PlateDtype | None = Field(
        None, description="Plate dtype holding every plane exactly (default: the dtype of the "
        "first image; a plane it cannot hold is an error).")
    workers: int | None = Field(
        None, ge=1, description="Parallel processes (default: number of CPUs).")

    @field_validator("channel_names", mode="before")
    @classmethod
    def _split_channel_names(cls, v: Any) -> Any:
        return _comma_list(v)

    def open_export_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`hcs.io.open_export` (metadata overrides only when set).

        Examples
        --------
        >>> ConvertParams(pixel_size=0.5).open_export_kwargs()["pixel_size_um"]
        0.5
        """
        kw: dict[str, Any] = {"fmt": self.format, "pattern": self.pattern,
                              "plate_format": self.plate_format,
                              "allow_outside": self.allow_outside}
        extra = {"pixel_size_um": self.pixel_size, "z_step_um": self.z_step,
                 "channel_names": list(self.channel_names) if self.channel_names else None,
                 "override_metadata": self.override_metadata or None}
        kw.update({k: v for k, v in extra.items() if v is not None})
        return kw

    def result_params(self) -> dict[str, Any]:
        """The parameters that change the plate written (not ``workers``)."""
        return self.model_dump(mode="json", exclude={"workers"})


class RunParams(_Params):
    """How the cells of a plate are detected and classified, and where (``hcs run``)."""

    detector: str = Field(
        "threshold", description="Detection method (threshold) or a detector folder.")
    nucleus_channel: str | None = Field(
        None, description="Channel (name or index) to detect nuclei on.")
    channels: dict[str, str] = Field(
        default_factory=dict,
        description="Model input role -> plate channel: brightfield=BF,nucleus=DAPI")
    timepoint: int | None = Field(
        None, ge=0, description="Timepoint to process (required if the plate has several).")
    wells: tuple[str, ...] | None = Field(None, description="Only these wells: A01,B03,...")
    workers: int | None = Field(None, ge=1, description="Local worker processes.")
    threads_per_worker: int = Field(1, ge=1, description="Threads each.")
    scheduler: str | None = Field(
        None, description="Existing Dask scheduler address (tcp://host:8786).")
    gpus: str = Field("auto", description="auto | 0 | N")
    batch_size: int = Field(64, ge=1, le=4096, description="Crops per inference batch.")
    fields_per_task: int = Field(
        4, ge=1, description="Fields per task; their crops share inference batches.")
    seed: int = Field(0, description="Random seed (recorded in run.json).")
    cell_channel: str | None = Field(
        None, description="Segment whole cells from the nuclei on this channel "
        "(NAME[:cytoplasm|:membrane]): Cells and Cytoplasm measurements, labels/cells.")
    labels: bool = Field(
        True, description="Write each field's nuclei as an NGFF label image into the plate "
        "(<field>/labels/nuclei, value = cell_id).")
    measure: Measure = Field(
        "basic", description="Per-cell measurements on every channel: none, basic (shape and "
        "intensity) or full (+ texture and channel correlation).")

    @field_validator("nucleus_channel", mode="before")
    @classmethod
    def _nucleus(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v

    @field_validator("cell_channel")
    @classmethod
    def _cell_channel(cls, v: Any) -> Any:
        if v is not None:
            name, _, stain = str(v).partition(":")
            if not name.strip() or stain.strip() not in ("", "cytoplasm", "membrane"):
                raise ValueError("expected NAME, NAME:cytoplasm or NAME:membrane")
        return v

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, v: Any) -> Any:
        if not re.fullmatch(r"auto|\d+", str(v).strip()):
            raise ValueError("expected auto, 0 (CPU only) or a number of GPUs")
        return str(v).strip()

    @field_validator("channels", mode="before")
    @classmethod
    def _channels(cls, v: Any) -> Any:
        if v is None:
            return {}
        if isinstance(v, str):
            return parse_channel_map(v)
        return v

    @field_validator("wells", mode="before")
    @classmethod
    def _split_wells(cls, v: Any) -> Any:
        return _comma_list(v)

    def result_params(self) -> dict[str, Any]:
        """The parameters that change the cell tables (not where or how fast they run)."""
        return {"detector": self.detector, "nucleus_channel": self.nucleus_channel,
                "channel_map": dict(self.channels), "timepoint": self.timepoint,
                "wells": list(self.wells) if self.wells else None, "measure": self.measure,
                "cell_channel": self.cell_channel}

    def run_plate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`hcs.engine.run.run_plate`."""
        kw = self.model_dump(exclude={"channels", "wells"})
        kw.update(channel_map=dict(self.channels) or None,
                  wells=list(self.wells) if self.wells else None)
        return kw

    def engine_params(self, plate: str, assay: str | None, model: str | None,
                      timepoint: int = 0,
                      detector: str | None = None) -> EngineParams:
        """What every worker gets (:class:`hcs.engine.processor.EngineParams`).

        ``plate`` and ``model`` are resolved paths, ``timepoint`` the one chosen for the plate
        and ``detector`` the resolved detector (default: :attr:`detector`).
        """
        from hcs.engine.processor import EngineParams

        return validate(
            EngineParams, plate=plate, assay=assay, model=model,
            detector=detector or self.detector, nucleus_channel=self.nucleus_channel,
            batch_size=self.batch_size, seed=self.seed, torch_threads=self.threads_per_worker,
            device="cpu" if self.gpus.strip() == "0" else "auto",
            channel_map=tuple(sorted(self.channels.items())), timepoint=timepoint,
            measure=self.measure, labels=self.labels, cell_channel=self.cell_channel)


class AggregateParams(_Params):
    """How cells become wells (``hcs aggregate``)."""

    assay: str | None = Field(None, description="Assay (default: from run.json).",
                              json_schema_extra=_short("-a"))
    layout: str | None = Field(
        None, description="Plate layout joined to the wells (CSV, grid, Harmony XML).",
        json_schema_extra=_short("-l"))
    positive: tuple[str, ...] | None = Field(
        None, description="Percent-positive readouts: CHANNEL[:otsu|:gmm|:>VALUE], e.g. "
        "PH3 or PI:>1500 (threshold on the nuclear mean intensity, once per plate).")
    exclude_qc: bool = Field(
        False, description="Leave out the fields image QC flags (out of focus, saturated); "
        "the wells table says how many and why (fields.parquet lists every field).")
    qc_focus_mad: float = Field(
        3.0, gt=0, description="Image QC: a field is out of focus when its focus slope is more "
        "than this many robust SDs (1.4826 MAD) below the plate median.")
    qc_saturation_pct: float = Field(
        1.0, ge=0, le=100, description="Image QC: a field is saturated when a channel has more "
        "than this % of its pixels at the maximum.")

    @field_validator("positive", mode="before")
    @classmethod
    def _split_positive(cls, v: Any) -> Any:
        out = _comma_list(v)
        if out:
            from hcs.readouts import parse_positive

            for p in out:
                parse_positive(p)  # a bad value is refused before any work
        return out


class StatsParams(_Params):
    """Which statistics are computed (``hcs stats``)."""

    layout: str | None = Field(None, description="Plate layout (CSV, grid, Harmony XML).",
                               json_schema_extra=_short("-l"))
    reference: str | None = Field(
        None, description="Reference condition (default: the negative control).",
        json_schema_extra=_short("-r"))
    test: Test = Field("student", description="t-test: student (pooled variance) or welch.")
    correction: Correction = Field("fdr_bh", description="Multiple-testing correction.")
    transform: Transform = Field(
        "none", description="none (frequencies) or logit (empirical logit of the counts).")
    blocks: Blocks = Field(
        "model", description="Several plates: model (plate factor) or normalise (to each "
        "plate's reference).")
    readout: tuple[str, ...] | None = Field(
        None, description="Readouts to test, comma-separated (default: all freq_ columns).")
    plate_format: int | None = Field(None, gt=0, description="Wells of the plate.")
    include_missing_planes: bool = Field(
        False, description="Use wells with planes missing at convert (flag qc_missing_planes; "
        "left out by default).")

    @field_validator("readout", mode="before")
    @classmethod
    def _split_readout(cls, v: Any) -> Any:
        return _comma_list(v)

    def run_stats_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`hcs.stats.run.run_stats`."""
        return {"reference": self.reference, "test": self.test, "correction": self.correction,
                "transform": self.transform, "blocks": self.blocks,
                "readouts": list(self.readout) if self.readout else None,
                "include_missing_planes": self.include_missing_planes}


class ReportParams(_Params):
    """What the HTML report holds (``hcs report``)."""

    gallery: bool = Field(True, description="Cell image gallery.")
    montage: bool = Field(True, description="Plate montage: a thumbnail per well, its fields "
                          "with the cells outlined on a click (--no-montage: none).")
    qc_readout: str | None = Field(
        None, description="Readout whose Z' on the layout's controls gives each plate's verdict "
        "(a column such as freq_dead, or a class; default: the first with a Z').")


class ExportParams(_Params):
    """How a run's cells are exported as profiles (``hcs export profiles``)."""

    level: Literal["cell", "well"] = Field(
        "cell", description="One row per cell, or per well (the median of each feature).")
    layout: str | None = Field(
        None, description="Plate layout for the Metadata_ columns (default: the run's "
        "wells.parquet).", json_schema_extra=_short("-l"))


class AnalyzeParams(_Params):
    """Everything ``hcs analyze`` needs: the assay, layout and model and each stage's options."""

    assay: str | None = Field(
        None, description="Assay: cic | livedead | mitosis | cancer (default: the --model "
        "card's; neither: detection and measurements only).", json_schema_extra=_short("-a"))
    layout: str = Field(..., description="Plate layout (CSV, grid, Harmony XML). Several "
                        "plates: one for all, one with a plate column, or PLATE=FILE each "
                        "(repeat the option).", json_schema_extra=_short("-l"))
    model: str | None = Field(
        None, description="Model folder (default: the assay's shipped model).",
        json_schema_extra=_short("-m"))
    force: bool = Field(False, description="Re-run every stage.")
    convert: ConvertParams = Field(default_factory=ConvertParams)
    run: RunParams = Field(default_factory=RunParams)
    aggregate: AggregateParams = Field(default_factory=AggregateParams)
    stats: StatsParams = Field(default_factory=StatsParams)
    report: ReportParams = Field(default_factory=ReportParams)


#: The stage models of :class:`AnalyzeParams`, by its field name.
STAGES: dict[str, type[BaseModel]] = {"convert": ConvertParams, "run": RunParams,
                                      "aggregate": AggregateParams, "stats": StatsParams,
                                      "report": ReportParams}


def options_of(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The options of a model by name: its own fields, then those of its nested models, each
    name once (the first declaration wins; a shared name means the same in every model).

    Examples
    --------
    >>> list(options_of(AnalyzeParams))[:5]
    ['assay', 'layout', 'model', 'force', 'format']
    """
    out: dict[str, FieldInfo] = {}
    nested = []
    for name, info in model.model_fields.items():
        if _is_model(info.annotation):
            nested.append(info.annotation)
        else:
            out[name] = info
    for sub in nested:
        for name, info in options_of(sub).items():
            out.setdefault(name, info)
    return out


def from_options(model: type[M], base: M | None = None, /, **options: Any) -> M:
    """``model`` (nested models included) from flat option values, over ``base`` (default: the
    model's defaults); an option shared by several models goes to each. One
    :class:`InputError` for an unknown option or a bad value.

    Examples
    --------
    >>> p = from_options(AnalyzeParams, assay="cic", layout="l.csv", workers=2, test="welch")
    >>> p.convert.workers, p.run.workers, p.stats.test, p.aggregate.layout
    (2, 2, 'welch', 'l.csv')
    """
    unknown = sorted(set(options) - set(options_of(model)))
    if unknown:
        raise InputError(f"unknown option {option_name(unknown[0])} of {model.__name__}")
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if _is_model(info.annotation):
            sub = info.annotation
            values[name] = from_options(sub, getattr(base, name, None),
                                        **{k: v for k, v in options.items()
                                           if k in options_of(sub)})
        elif name in options:
            values[name] = options[name]
        elif base is not None:
            values[name] = getattr(base, name)
    return validate(model, **values)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def option_name(field: str) -> str:
    """The command-line option of a field.

    Examples
    --------
    >>> option_name("fields_per_task")
    '--fields-per-task'
    """
    return "--" + field.replace("_", "-")


def validate(model: type[M], /, **values: Any) -> M:
    """``model(**values)``, a bad value raised as one :class:`InputError` naming its option."""
    try:
        return model(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, InputError):  # a validator's own message names the option
            raise InputError(str(cause)) from None
        loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
        name = option_name(loc[-1]) if loc else model.__name__
        msg = err["msg"]
        msg = msg[0].lower() + msg[1:] if msg else msg
        msg = re.sub(r"^value error, ", "", msg)
        got = f" (got {err['input']!r})" if err["type"] not in ("missing",) and not isinstance(
            err.get("input"), dict) else ""
        raise InputError(f"{name}: {msg}{got}") from None


def parse_channel_map(text: str | None) -> dict[str, str]:
    """``"brightfield=BF,nucleus=DAPI"`` -> ``{"brightfield": "BF", "nucleus": "DAPI"}``.

    Examples
    --------
    >>> parse_channel_map("brightfield=Brightfield, nucleus=1")
    {'brightfield': 'Brightfield', 'nucleus': '1'}
    """
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        role, sep, name = part.partition("=")
        if not sep or not role.strip() or not name.strip():
            raise InputError(f"--channels: expected ROLE=CHANNEL, got {part.strip()!r}")
        out[role.strip()] = name.strip()
    return out
