"""Assays as data: :func:`get_assay` returns the one frozen :class:`Assay` declaration of an
assay (classes, exclusions, composites, input channels and crop, decision rule); user-defined
assays (:mod:`hcs.assays.user`) are the same declaration from ``--classes`` or a YAML file."""

from hcs.assays.inputs import InputChannel, InputSpec
from hcs.assays.registry import ASSAYS, Assay, DecisionRule, get_assay, get_input_spec
from hcs.assays.rules import apply_rule, counted, get_rule
from hcs.assays.user import (
    assay_from_card,
    assay_from_classes,
    assay_from_dict,
    assay_to_dict,
    load_assay_file,
    run_assay,
)

__all__ = ["ASSAYS", "Assay", "DecisionRule", "InputChannel", "InputSpec", "apply_rule",
           "assay_from_card", "assay_from_classes", "assay_from_dict", "assay_to_dict",
           "counted", "get_assay", "get_input_spec", "get_rule", "load_assay_file", "run_assay"]
