"""The whole-plate engine: plate -> one Dask task per field -> ``cells/`` -> ``wells.parquet``.

``run_plate`` (``hcs run``) processes a plate, a few fields per task with their crops batched
together, on an embedded LocalCluster or an existing Dask
scheduler, resumably and with failures recorded; ``aggregate_run`` (``hcs aggregate``) streams
the cell tables into the well table. See docs/scaling.md.
"""

from hcs.engine.aggregate_run import aggregate_run
from hcs.engine.processor import EngineParams, FieldMeta, FieldProcessor, PipelineProcessor
from hcs.engine.run import RunSummary, list_fields, run_plate
from hcs.engine.tasks import cells_path, process_field, process_fields

__all__ = ["EngineParams", "FieldMeta", "FieldProcessor", "PipelineProcessor", "RunSummary",
           "aggregate_run", "cells_path", "list_fields", "process_field", "process_fields",
           "run_plate"]
