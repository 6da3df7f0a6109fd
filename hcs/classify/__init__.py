"""Per-cell classification: crops (:mod:`.crops`), timm models with model cards
(:mod:`.models`) and batched inference (:mod:`.infer`). Torch is imported only when used."""
