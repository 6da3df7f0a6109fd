"""Training and evaluation of crop classifiers: data (:mod:`.datasets`), the loop (:mod:`.loop`),
metrics (:mod:`.metrics`), fluorescence-derived labels (:mod:`.labels`) and the CLI entry points
(:mod:`.pipeline`)."""
