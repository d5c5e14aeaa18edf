"""Built-in datasets (kind ``dataset``).

Configs live in :mod:`diffctl.datasets.configs` (no torch import, so listing plugins stays
cheap); implementations in :mod:`diffctl.datasets.toy2d` (shared 2-D machinery: split,
augmentation, reference draws), :mod:`diffctl.datasets.moons` and :mod:`diffctl.datasets.gmm`.
"""
