"""Labelling cells of a run: sampling, their crops as the model sees them, the labelling server,
export to and import from other labelling tools (``hcs annotate``)."""

from hcs.annotate.cells import KEY, CropSpec, cell_crops, read_run_cells

__all__ = ["KEY", "CropSpec", "cell_crops", "read_run_cells"]
