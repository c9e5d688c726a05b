"""Experiments: one place per paper that trains and evaluates the rows of its tables.

The model files (``mlbook/models/<paper>.py``) hold the papers' modules, losses and
decoding only; the run settings, the cached ``run_*`` functions and the evidence the
chapters need live here, one module per paper, on top of ``shared`` (data, the shared
backbone, frozen features) and ``mlbook.cache``.
"""
