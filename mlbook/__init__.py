"""mlbook: the helper package of the multi-label image classification reproducibility book."""
__version__ = "0.1.0"
