"""Analysis: cost model and sweeps (``cost``, ``sweep``), attention maps and the explorer (``maps``, ``explorer``),
classic filters written as attention (``classic``). Nothing here is imported by the operator or the models."""
