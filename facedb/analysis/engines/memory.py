"""Hand the C heap's free pages back to the system after a model is loaded.

Loading the sface recogniser on onnxruntime parses the ONNX file, folds its int8 weights into
float32 and lets onnxruntime optimise the graph: a few hundred MB of short-lived C allocations.
glibc keeps some of the freed pages in the process heap, so every process that loads the pack (the
server and each analysis worker) stayed larger than it needs to. ``malloc_trim(0)`` returns them.
Measured here (``tests/test_sface_ort.py``'s child process, 13 + 6 runs): loading ``SFaceEngine``
grew the resident size by 112 MB in most runs (122, 167 and 253 MB in others) without the release,
and by 75 MB with it.
"""
from __future__ import annotations

import ctypes
import gc
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _libc() -> Any:
    """The C library this process already runs on (``dlopen(NULL)``), when it has ``malloc_trim``."""
    try:
        lib = ctypes.CDLL(None)
    except (OSError, TypeError):  # TypeError: Windows has no process-wide handle
        return None
    return lib if hasattr(lib, "malloc_trim") else None


def release_freed_memory() -> bool:
    """Collect Python garbage, then return the C heap's free pages to the system with glibc's
    ``malloc_trim``. True when it ran; False where the C library has no ``malloc_trim`` (musl,
    macOS), which changes nothing but the process's resident size."""
    gc.collect()
    lib = _libc()
    if lib is None:
        return False
    lib.malloc_trim(0)
    return True
