"""Plain helpers for the real-screen widget tests (fixtures are in this folder's conftest.py)."""
from __future__ import annotations

import numpy as np

#: the bundled HeLa field's channels and the patterns naming their files
CHANNELS = ["H2B", "tubulin"]
PATTERNS = ["_Crfp", "_Cgfp"]
#: the HeLa nuclei are about 42 px across (core/wscnn/shift.py measured 42.5 px)
DIAMETER = 42


def brighter(field: np.ndarray, factor: float = 2.0) -> np.ndarray:
    """``field`` made ``factor`` x brighter (8-bit, saturating)."""
    return np.clip(factor * field.astype(np.float32), 0, 255).astype(np.uint8)
