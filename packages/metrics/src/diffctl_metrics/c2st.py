"""Classifier two-sample test, C2ST (Lopez-Paz & Oquab 2017, "Revisiting classifier two-sample
tests", ICLR).

A classifier learns to tell generated samples (label 0) from real ones (label 1); its accuracy
on held-out points is the statistic. With equal classes chance is 0.5, and the best possible
classifier reaches 1/2 + TV/2 (TV the total variation distance between the two
distributions), so the value says how often the difference can be seen. Two samples of one
distribution score 0.5 up to noise: a standard deviation of 0.010 at 2000 points per side and
0.007 at 5000 (measured; the binomial 1/sqrt(4 x test points) is 0.008 and 0.005, neighbouring
predictions are correlated). Values below 0.5 are noise, never better than real data: the
metric is registered lower-is-better and is read next to its real-vs-real floor.

There is no kernel scale to tune: a k-nearest-neighbour classifier compares local densities
wherever the samples differ, at fine or coarse scale (a haze between the moons, a ring smeared
along its circle, a 3% change of scale).

Defaults, chosen for power at the sample sizes runs use (1,000 to 5,000 per side; see
tests/test_metric_power.py):

- ``knn`` with k the odd integer nearest sqrt(training points): 41 at 1000 per side, 57 at
  2000, 89 at 5000. Growing k with k/n -> 0 keeps kNN consistent, and the power is flat around
  this k. Measured as the distance of a bad sample's mean value from the floor's mean, in
  floor standard deviations: at 2000 per side, gmm-ring shifted by 0.1 moved 9.6 / 9.5 / 14 sd
  at k = 15 / 57 / 115, and the smeared ring 36 / 32 / 40 sd, but only 15 at k = 201 (the
  neighbourhoods grow past the modes); at 5000 per side two-moons scaled 1.03x moved 5.7 /
  4.7 / 4.8 / 6.1 sd at k = 31 / 51 / 89 / 151. k = 5 was weaker (the 1.03x moons scored
  0.516-0.525 at 2000 per side, against 0.530-0.538 at k = 15 and 31).
- 5 folds: every point is tested once (the least noise for the data at hand), by a classifier
  trained on 80% of the points.
- features standardised on the training folds: distances and fits do not depend on units.

Folds come from one seeded permutation applied to both samples, so each fold holds the same
positions of each sample: exactly stratified, and swapping generated and real gives the same
partition (with kNN the statistic is then exactly symmetric). Both samples are first
subsampled to one size (seeded) so that 0.5 is the chance level.

Images: with ``feature_extractor`` set, the classifier reads the extractor's features (by
default the layer FID reads), shared with fid/kid/prc through the evaluation's ``features=``
store; without it, the flattened pixels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from diffctl.errors import UsageError
from diffctl_metrics._common import as_numpy, subsample_indices
from diffctl_metrics.configs import C2STConfig


def fold_indices(m: int, folds: int, seed: int) -> np.ndarray:
    """Fold of each of ``m`` positions (int64, values 0..folds-1, sizes differing by at most
    one) from a seeded permutation; the same array serves both samples."""
    order = np.random.default_rng(seed).permutation(m)
    out = np.empty(m, dtype=np.int64)
    out[order] = np.arange(m) % folds
    return out


def training_points(m: int, folds: int) -> int:
    """Training points of the smallest training set of :func:`fold_indices` folds over two
    samples of ``m``: all but the largest fold, ceil(m / folds) per sample."""
    return 2 * (m - -(-m // folds))


def default_neighbors(n_train: int) -> int:
    """The odd integer nearest sqrt(n_train) (at least 1)."""
    return max(1, 2 * round((math.sqrt(n_train) - 1) / 2) + 1)


def make_classifier(config: C2STConfig, n_train: int) -> Any:
    """The unfitted scikit-learn classifier of ``config`` (behind a StandardScaler when
    ``standardize``) for folds of ``n_train`` training points."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if config.classifier == "knn":
        from sklearn.neighbors import KNeighborsClassifier
        k = config.n_neighbors or default_neighbors(n_train)
        clf = KNeighborsClassifier(n_neighbors=min(k, n_train))
    elif config.classifier == "logistic":
        from sklearn.linear_model import LogisticRegression
        clf = LogisticRegression(max_iter=1000)
    else:
        from sklearn.neural_network import MLPClassifier
        # Adam at 1e-2 with early stopping on 10% of the training points: at 2000 points per
        # side as accurate as 200 full epochs at 1e-3 (blob 0.757 vs 0.761, smeared ring 0.735
        # vs 0.740) in a sixth of the time; at 1e-3 early stopping quit too soon (0.724, 0.663)
        clf = MLPClassifier(hidden_layer_sizes=tuple(config.hidden_layers),
                            learning_rate_init=1e-2, max_iter=200, early_stopping=True,
                            random_state=config.seed)
    return make_pipeline(StandardScaler(), clf) if config.standardize else clf


def c2st_scores(a: np.ndarray, b: np.ndarray, config: C2STConfig) -> np.ndarray:
    """Accuracy of each fold's classifier on its held-out points, for equal-size (m, D) samples
    ``a`` (label 0) and ``b`` (label 1)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    m = len(a)
    fold = fold_indices(m, config.folds, config.seed)
    labels = np.r_[np.zeros(m, dtype=np.int64), np.ones(m, dtype=np.int64)]
    x, folds = np.concatenate([a, b]), np.r_[fold, fold]
    n_train = training_points(m, config.folds)
    scores = []
    for f in range(config.folds):
        test = folds == f
        clf = make_classifier(config, n_train)
        with warnings.catch_warnings():  # an MLP stopped at max_iter is still a classifier
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x[~test], labels[~test])
        scores.append(float(np.mean(clf.predict(x[test]) == labels[test])))
    return np.asarray(scores)


class C2ST:
    """``c2st``: ``{"c2st": mean held-out accuracy over the folds, "c2st_std": its std over
    the folds}``; 0.5 = indistinguishable, lower is better (see the module docstring)."""

    higher_is_better = False

    def __init__(self, config: C2STConfig | None = None):
        self.config = config or C2STConfig()
        self.metadata: dict[str, Any] = {}
        self._extractor: Any = None

    def _features(self, generated: Any, real: Any, store: dict | None
                  ) -> tuple[np.ndarray, np.ndarray, str | None]:
        """The two samples as float64 (N, D) arrays: the points/flattened images, or extractor
        features of the images; and the extractor layer used (None without extractor)."""
        cfg = self.config
        if cfg.feature_extractor is None:
            return as_numpy(generated), as_numpy(real), None
        from diffctl_metrics.fidelity import (
            _Images,
            create_feature_extractor,
            extraction_device,
            image_features,
        )
        if self._extractor is None:
            self._extractor = create_feature_extractor(cfg.feature_extractor, None,
                                                       cfg.feature_extractor_options)
        layer = cfg.feature_layer or self._extractor.layer_for("fid")
        if layer not in self._extractor.layers:
            raise UsageError(f"c2st: feature-extractor '{cfg.feature_extractor}' has no layer "
                             f"{layer!r} (it has {', '.join(self._extractor.layers)})")
        device = extraction_device(cfg.device)
        out = [image_features(self._extractor, _Images(images, role), device, cfg.batch_size,
                              store)[layer].double().numpy()
               for images, role in ((generated, "generated"), (real, "real"))]
        return out[0], out[1], layer

    def __call__(self, generated: Any, real: Any, *,
                 features: dict | None = None) -> dict[str, float]:
        cfg = self.config
        a, b, layer = self._features(generated, real, features)
        m = min(len(a), len(b), cfg.max_points)
        if m < cfg.folds:
            raise UsageError(f"c2st needs at least folds = {cfg.folds} samples on each side, "
                             f"got {len(a)} and {len(b)}")
        for sample, role in ((a, "generated"), (b, "real")):
            if not np.isfinite(sample).all():
                raise UsageError(f"c2st: the {role} samples contain NaN or infinite values")
        if a.shape[1] != b.shape[1]:
            raise UsageError(f"c2st: generated and real samples differ in dimension "
                             f"({a.shape[1]} and {b.shape[1]})")
        sizes = len(a), len(b)
        a = a[subsample_indices(len(a), m, cfg.seed)]
        b = b[subsample_indices(len(b), m, cfg.seed)]
        scores = c2st_scores(a, b, cfg)
        n_train = training_points(m, cfg.folds)
        extractor = self._extractor if layer is not None else None
        self.metadata = {
            "metric": "c2st", "classifier": cfg.classifier,
            "n_neighbors": (min(cfg.n_neighbors or default_neighbors(n_train), n_train)
                            if cfg.classifier == "knn" else None),
            "folds": cfg.folds, "num_generated": sizes[0], "num_real": sizes[1],
            "num_points": m, "dimension": int(a.shape[1]),
            "feature_extractor": cfg.feature_extractor, "feature_layer": layer,
            "weights_sha256": extractor.weights_sha256() if extractor is not None else None,
        }
        return {"c2st": float(scores.mean()), "c2st_std": float(scores.std())}
