"""mlbook: the helper package of the multi-label image classification reproducibility book."""
import os as _os

from . import numerics as _numerics

__version__ = "0.1.0"

if _numerics.portable_enabled(_os.environ):   # MLBOOK_PORTABLE=1: before anything imports torch or numpy
    _numerics.set_portable_environment(_os.environ)
