"""Figures of the chapters, one module per paper: the chapters call them, the package keeps them."""
