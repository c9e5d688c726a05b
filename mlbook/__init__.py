"""mlbook: the helper package of the multi-label image classification reproducibility book."""
import os as _os

__version__ = "0.1.0"

if _os.environ.get("MLBOOK_PORTABLE", "1").strip() != "0":   # the portable mode (mlbook.numerics, the
    from . import numerics as _numerics                       # default): its environment before torch or numpy load

    _numerics.set_portable_environment(_os.environ)
