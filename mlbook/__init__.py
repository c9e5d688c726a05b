"""mlbook: the helper package of the multi-label image classification reproducibility book."""
import os as _os

__version__ = "0.1.0"

# a library's progress bars (MiniLM's "Loading weights", read on a cold run of chapter 07) are run logs,
# never a chapter's output: set before the Hugging Face libraries load and read it
_os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

if _os.environ.get("MLBOOK_PORTABLE", "1").strip() != "0":   # the portable mode (mlbook.numerics, the
    from . import numerics as _numerics                       # default): its environment before torch or numpy load

    _numerics.set_portable_environment(_os.environ)
