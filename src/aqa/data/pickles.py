"""A restricted unpickler for annotation and weight pickles, which are data from outside.

Only numpy array/scalar reconstruction and plain builtin containers are admitted; any other
global (``os.system``, ``builtins.eval``, a class from some package) is refused with an error
that names the file and the global, before anything from the pickle runs.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from aqa.errors import AqaError

# numpy moved its core to numpy._core in 2.0; pickles written by either name both occur.
_NUMPY_GLOBALS = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype")}

_BUILTIN_TYPES = {
    "dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool",
    "str", "bytes", "bytearray", "slice", "range",
}
_ALLOWED = _NUMPY_GLOBALS | {("builtins", n) for n in _BUILTIN_TYPES} | {
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # how protocol 2 pickles bytes; pure data
}


class UnsafePickleError(AqaError, pickle.UnpicklingError):
    """The pickle references a global outside the allow-list."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str):
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self._source}: refused to load: the pickle references {module}.{name}, "
            "which is not plain data (only numpy arrays and builtin containers are allowed)"
        )


def load_pickle(path: str | Path) -> Any:
    """Load a data pickle through the restricted unpickler."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return _RestrictedUnpickler(fh, str(path)).load()
    except UnsafePickleError:
        raise
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except Exception as exc:  # truncated or not a pickle at all
        raise pickle.UnpicklingError(f"{path}: not a readable pickle: {exc}") from exc


def loads_pickle(data: bytes, source: str = "<bytes>") -> Any:
    return _RestrictedUnpickler(io.BytesIO(data), source).load()
