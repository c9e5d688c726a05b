"""Models: one file per paper, plus the baselines their tables compare with."""
