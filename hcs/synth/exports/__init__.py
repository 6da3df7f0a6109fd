"""Export writers for the simulator and the test fixtures: planes out as a real Harmony export
(:mod:`hcs.synth.exports.harmony`) or a real ScanR data folder (:mod:`hcs.synth.exports.scanr`,
:mod:`hcs.synth.exports.scanr_descriptor`), in the layouts that :mod:`hcs.io` reads.

They live here, not in :mod:`hcs.io`, because hcs itself never writes an instrument export:
``hcs.io`` reads exports and reads and writes plates.
"""
