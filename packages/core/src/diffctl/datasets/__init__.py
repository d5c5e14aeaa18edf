"""Built-in datasets (kind ``dataset``).

Configs live in :mod:`diffctl.datasets.configs` and :mod:`diffctl.datasets.image_configs` (no
torch import, so listing plugins stays cheap). 2-D implementations: :mod:`diffctl.datasets.toy2d`
(shared machinery: split, augmentation, reference draws), :mod:`diffctl.datasets.moons` and
:mod:`diffctl.datasets.gmm`. Images: :mod:`diffctl.datasets.images` (shared machinery: data root,
[-1, 1] scaling, splits, reference draws), :mod:`diffctl.datasets.mnist`,
:mod:`diffctl.datasets.cifar10`, :mod:`diffctl.datasets.digits` and
:mod:`diffctl.datasets.image_folder`.
"""
