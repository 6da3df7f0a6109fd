"""Simulated screens with known ground truth, written as real Opera Phenix and ScanR exports.

``simulate_plate`` renders every field of a plate layout for one assay (cic, livedead, mitosis,
cancer), adds the artefacts of real screens, writes the planes through the Harmony or ScanR
export writers that ``hcs convert`` reads, and stores the truth cell by cell (see
docs/simulation.md).
"""

from hcs.synth.assays import ASSAYS, get_assay
from hcs.synth.simulate import DEFAULT_PIXEL_SIZE_UM, SimulationResult, simulate_plate

__all__ = ["ASSAYS", "DEFAULT_PIXEL_SIZE_UM", "SimulationResult", "get_assay", "simulate_plate"]
