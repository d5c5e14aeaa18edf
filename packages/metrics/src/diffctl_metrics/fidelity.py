"""FID, KID, Inception Score and precision/recall, computed by torch-fidelity.

All four compare images through the features of a pretrained network (a ``feature-extractor``
component: ``inception-v3-compat`` or ``lenet-mnist``, see ``feature_extractors/``):

- FID, Fréchet Inception Distance (Heusel et al. 2017): the Fréchet distance between Gaussians
  fitted to the two feature sets, |mu_g - mu_r|² + tr(S_g + S_r - 2 (S_g S_r)^(1/2)).
- KID, Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD² with the polynomial
  kernel (x·y / d + 1)³, averaged over random subsets; centred on zero for equal distributions.
- IS, Inception Score (Salimans et al. 2016): exp E_x KL(p(y|x) || p(y)) of the classifier's
  predictions on the generated images alone (at most the number of classes).
- Improved precision and recall (Kynkäänniemi et al. 2019): the share of generated images
  inside the k-NN manifold of the real ones (precision) and vice versa (recall).

The arithmetic is torch-fidelity's own: images go in as uint8 (N, 3, H, W) through a dataset
wrapper and torch-fidelity's extraction loop; statistics, distances and scores come from its
``fid_featuresdict_to_statistics`` / ``fid_statistics_to_metric``,
``kid_featuresdict_to_metric``, ``isc_featuresdict_to_metric`` and
``prc_featuresdict_to_metric``, the same functions ``torch_fidelity.calculate_metrics`` calls.
diffctl adds local weights, a reference cache keyed by content and weights hash
(``stats_cache``), precomputed reference statistics, and a report of what was measured.

Calling convention: ``metric(generated, real)`` with (N, C, H, W) float images in [-1, 1]
(C = 1 or 3) returns numbers only, the headline under the metric's name. After each call the
metric's ``metadata`` attribute describes the measurement: extractor, layer, weights file and
sha256, sample counts, resize mode, device, where the reference came from (``computed``,
``cache`` or ``stats-file``) and torch-fidelity's version.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffctl.errors import UsageError
from diffctl_metrics.configs import (
    FIDConfig,
    InceptionV3CompatConfig,
    ISCConfig,
    KIDConfig,
    LeNetMNISTConfig,
    PRCConfig,
)
from diffctl_metrics.feature_extractors.base import (
    FidelityFeatureExtractor,
    resolve_device,
    to_uint8,
)
from diffctl_metrics.stats_cache import (
    StatsCache,
    content_sha256,
    read_npz,
    reference_key,
    write_npz_atomic,
)

_BUILTIN_EXTRACTORS = {
    "inception-v3-compat": ("diffctl_metrics.feature_extractors.inception",
                            "InceptionV3Compat", InceptionV3CompatConfig),
    "lenet-mnist": ("diffctl_metrics.feature_extractors.lenet", "LeNetMNIST",
                    LeNetMNISTConfig),
}


def create_feature_extractor(name: str, weights: str | None = None) -> FidelityFeatureExtractor:
    """The ``feature-extractor`` component ``name`` with ``weights_path = weights`` when given.
    The built-ins are built directly; any other name comes from diffctl's registry."""
    if name in _BUILTIN_EXTRACTORS:
        import importlib
        module, attr, config_cls = _BUILTIN_EXTRACTORS[name]
        config = config_cls(weights_path=weights)
        return getattr(importlib.import_module(module), attr)(config)
    from diffctl.registry import get_registry
    overrides = {"weights_path": weights} if weights is not None else {}
    return get_registry().create("feature-extractor", name, **overrides)


# -- features of image sets, memoised ----------------------------------------------------------
class _Images:
    """Images as torch-fidelity reads them (uint8, CPU), with a lazily computed content hash."""

    def __init__(self, images: Any, role: str):
        if images is None:
            raise UsageError(f"the {role} images are missing")
        self.u8 = to_uint8(images)
        self._sha: str | None = None

    @property
    def sha256(self) -> str:
        if self._sha is None:
            self._sha = content_sha256(self.u8)
        return self._sha

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.u8.shape)


#: features of the most recent image sets: (images sha, extractor, weights sha, device) ->
#: {layer: features}. Lets fid, kid, isc and prc on the same samples share one forward pass.
_MEMO: OrderedDict[tuple[str, ...], dict[str, torch.Tensor]] = OrderedDict()
MEMO_SIZE = 4


def clear_feature_memo() -> None:
    """Forget the in-process features of recent image sets."""
    _MEMO.clear()


def image_features(extractor: FidelityFeatureExtractor, images: _Images,
                   device: torch.device, batch_size: int) -> dict[str, torch.Tensor]:
    """{layer: float32 (N, D)} for all of ``extractor.layers``, memoised per content."""
    key = (images.sha256, extractor.name, extractor.weights_sha256(), str(device))
    feats = _MEMO.get(key)
    if feats is None:
        feats = extractor.extract(images.u8, device, batch_size)
        _MEMO[key] = feats
        while len(_MEMO) > MEMO_SIZE:
            _MEMO.popitem(last=False)
    else:
        _MEMO.move_to_end(key)
    return feats


def extract_features(extractor: str | FidelityFeatureExtractor, images: Any,
                     device: str = "auto", batch_size: int = 256) -> dict[str, torch.Tensor]:
    """{layer: float32 (N, D)} features of (N, C, H, W) images in [-1, 1] through
    torch-fidelity, for an extractor name or component (memoised like the metrics')."""
    if isinstance(extractor, str):
        extractor = create_feature_extractor(extractor)
    return image_features(extractor, _Images(images, "input"), resolve_device(device),
                          batch_size)


def _as_f64(stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """torch-fidelity's FID asserts equal dtypes: compare float64 with float64."""
    return {"mu": np.asarray(stats["mu"], dtype=np.float64),
            "sigma": np.asarray(stats["sigma"], dtype=np.float64)}


def frechet_distance(stats_a: dict[str, np.ndarray], stats_b: dict[str, np.ndarray]) -> float:
    """torch-fidelity's Fréchet distance between two {mu, sigma} Gaussians (Heusel et al.
    2017, eq. 6); tr((S_a S_b)^(1/2)) is the sum of square roots of the product's eigenvalues."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric
    return float(fid_statistics_to_metric(_as_f64(stats_a), _as_f64(stats_b),
                                          verbose=False)[KEY_METRIC_FID])


def gaussian_stats(features: torch.Tensor) -> dict[str, np.ndarray]:
    """torch-fidelity's {mu, sigma} (mean and unbiased covariance) of (N, D) features."""
    from torch_fidelity.metric_fid import fid_features_to_statistics
    if len(features) < 2:
        raise UsageError("FID needs at least 2 images on each side")
    return fid_features_to_statistics(features)


def inception_score(logits: torch.Tensor, splits: int = 10, shuffle: bool = True,
                    seed: int = 2020) -> tuple[float, float]:
    """torch-fidelity's Inception Score of (N, K) logits: mean and std over ``splits``
    (Salimans et al. 2016). Splits are capped at N."""
    from torch_fidelity.metric_isc import (
        KEY_METRIC_ISC_MEAN,
        KEY_METRIC_ISC_STD,
        isc_features_to_metric,
    )
    out = isc_features_to_metric(logits, min(splits, len(logits)), shuffle, seed)
    return float(out[KEY_METRIC_ISC_MEAN]), float(out[KEY_METRIC_ISC_STD])


# -- the metrics --------------------------------------------------------------------------------
class _FidelityMetric:
    """Shared machinery: extractor, device, features, reference cache, metadata."""

    higher_is_better = False
    metric_key = ""  # torch-fidelity's metric name: fid | kid | isc | prc

    def __init__(self, config: Any):
        self.config = config
        self.metadata: dict[str, Any] = {}
        self._reference_path: str | None = None
        self._extractor: FidelityFeatureExtractor | None = None

    @property
    def extractor(self) -> FidelityFeatureExtractor:
        if self._extractor is None:
            self._extractor = create_feature_extractor(self.config.feature_extractor,
                                                       self.config.feature_extractor_weights)
        return self._extractor

    @property
    def layer(self) -> str:
        return self.extractor.layer_for(self.metric_key)

    def _features(self, images: _Images) -> torch.Tensor:
        feats = image_features(self.extractor, images, resolve_device(self.config.device),
                               self.config.batch_size)
        return feats[self.layer]

    def _reference(self, real: _Images, kind: str,
                   compute: Callable[[], dict[str, np.ndarray]]
                   ) -> tuple[dict[str, np.ndarray], str]:
        """``compute()`` for the real images, through the on-disk cache when enabled.
        Returns the arrays and where they came from (``computed`` or ``cache``); the cache
        file is remembered for the report."""
        self._reference_path = None
        if not getattr(self.config, "cache", False):
            return compute(), "computed"
        ext = self.extractor
        key = reference_key(kind=kind, images_sha256=real.sha256, shape=real.shape,
                            extractor=ext.name, layer=self.layer,
                            weights_sha256=ext.weights_sha256())
        cache = StatsCache(self.config.cache_dir)
        hit = cache.get(kind, key, ext.name)
        self._reference_path = str(cache.path(kind, key, ext.name))
        if hit is not None:
            return hit, "cache"
        arrays = compute()
        cache.put(kind, key, ext.name, arrays,
                  {**self._identity(), "num_samples": real.shape[0], "shape": real.shape})
        return arrays, "computed"

    def _identity(self) -> dict[str, Any]:
        return {**self.extractor.describe(), "feature_layer": self.layer}

    reference_kind: str | None = None  # what the real side caches: fid-stats | features

    def prepare_reference(self, real: Any) -> str:
        """Compute and cache the real side once, before many calls with the same ``real``
        (``diffctl eval --checkpoints all`` calls it in the parent so that its worker
        processes all hit the cache). Returns ``computed``, ``cache`` or ``none``."""
        if (self.reference_kind is None or not getattr(self.config, "cache", False)
                or getattr(self.config, "reference_stats", None)):
            return "none"
        ref = _Images(real, "real")
        if self.reference_kind == "fid-stats":
            compute = lambda: gaussian_stats(self._features(ref))  # noqa: E731
        else:
            compute = lambda: {"features": self._features(ref).numpy()}  # noqa: E731
        return self._reference(ref, self.reference_kind, compute)[1]

    def _report(self, generated: _Images, real: _Images | None, **extra: Any) -> None:
        import torch_fidelity
        height, width = generated.shape[-2:]
        self.metadata = {
            "metric": self.metric_key,
            **self._identity(),
            "num_generated": generated.shape[0],
            "num_real": real.shape[0] if real is not None else None,
            "image_size": [height, width],
            "resize": self.extractor.resize_mode(height, width),
            "device": str(resolve_device(self.config.device)),
            "reference_path": self._reference_path,
            "torch_fidelity_version": torch_fidelity.__version__,
            **extra,
        }


class FID(_FidelityMetric):
    """``fid``: Fréchet distance between Gaussian fits of generated and real features.

    Returns ``{"fid": value}``. The real side is ``reference_stats`` when set, else the
    statistics of ``real`` (from the cache when present). Lower is better; compare with the
    real-vs-real floor at the same sample size (FID is biased upwards at small N).
    """

    metric_key = "fid"
    reference_kind = "fid-stats"

    def __init__(self, config: FIDConfig | None = None):
        super().__init__(config or FIDConfig())

    def __call__(self, generated: Any, real: Any = None) -> dict[str, float]:
        gen = _Images(generated, "generated")
        stats_real, source, ref, num_real = self._real_stats(real)  # first: fails fast
        stats_gen = gaussian_stats(self._features(gen))
        value = frechet_distance(stats_gen, stats_real)
        self._report(gen, ref, reference=source)
        if num_real is not None:
            self.metadata["num_real"] = num_real
        return {"fid": value}

    def _real_stats(self, real: Any) -> tuple[dict[str, np.ndarray], str, _Images | None,
                                              int | None]:
        if self.config.reference_stats:
            stats, num = self.load_reference_stats(self.config.reference_stats)
            self._reference_path = str(Path(self.config.reference_stats).expanduser())
            return stats, "stats-file", None, num
        ref = _Images(real, "real (or set reference_stats)")
        stats, source = self._reference(ref, "fid-stats",
                                        lambda: gaussian_stats(self._features(ref)))
        return stats, source, ref, ref.shape[0]

    def reference_stats(self, real: Any) -> dict[str, np.ndarray]:
        """{mu, sigma} of ``real`` with this metric's extractor (through the cache)."""
        ref = _Images(real, "real")
        stats, _ = self._reference(ref, "fid-stats", lambda: gaussian_stats(self._features(ref)))
        return stats

    def save_reference_stats(self, real: Any, path: str | Path) -> Path:
        """Write the statistics of ``real`` to an ``.npz`` usable as ``reference_stats``
        (arrays ``mu``, ``sigma``, ``num_samples``; the extractor identity in ``meta``)."""
        ref = _Images(real, "real")
        stats = self.reference_stats(real)
        path = Path(path).expanduser()
        write_npz_atomic(path, {"mu": stats["mu"], "sigma": stats["sigma"],
                                "num_samples": np.array(ref.shape[0])},
                         {**self._identity(), "shape": ref.shape,
                          "images_sha256": ref.sha256})
        return path

    def load_reference_stats(self, path: str | Path) -> tuple[dict[str, np.ndarray], int | None]:
        """{mu, sigma} from an ``.npz`` (ours or pytorch-fid's), checked against this metric's
        extractor when the file says which one it was computed with."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise UsageError(f"reference_stats file not found: {path}")
        try:
            arrays, meta = read_npz(path)
        except Exception as exc:
            raise UsageError(f"cannot read reference_stats {path}: {type(exc).__name__}: "
                             f"{exc}") from None
        if "mu" not in arrays or "sigma" not in arrays:
            raise UsageError(f"reference_stats {path} lacks the arrays mu and sigma")
        ext = self.extractor
        checks: tuple[tuple[str, Callable[[], str]], ...] = (
            ("feature_extractor", lambda: ext.name), ("feature_layer", lambda: self.layer),
            ("weights_sha256", ext.weights_sha256))
        for field, mine in checks:
            if field in meta and meta[field] != mine():
                raise UsageError(f"reference_stats {path} were computed with {field} "
                                 f"{meta[field]}, not {mine()}")
        mu, sigma = arrays["mu"], arrays["sigma"]
        if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
            raise UsageError(f"reference_stats {path}: mu {mu.shape} / sigma {sigma.shape} are "
                             "not a mean vector and its covariance")
        num = int(arrays["num_samples"]) if "num_samples" in arrays else None
        return {"mu": mu, "sigma": sigma}, num


class KID(_FidelityMetric):
    """``kid``: unbiased polynomial-kernel MMD² of the features, averaged over subsets.

    Returns ``{"kid": mean, "kid_std": std over subsets, "kid_subset_size": size used}``.
    Centred on zero (it can be slightly negative); lower is better.
    """

    metric_key = "kid"
    reference_kind = "features"

    def __init__(self, config: KIDConfig | None = None):
        super().__init__(config or KIDConfig())

    def __call__(self, generated: Any, real: Any) -> dict[str, float]:
        from torch_fidelity.metric_kid import (
            KEY_METRIC_KID_MEAN,
            KEY_METRIC_KID_STD,
            kid_featuresdict_to_metric,
        )
        cfg = self.config
        gen, ref = _Images(generated, "generated"), _Images(real, "real")
        feats_gen = self._features(gen)
        arrays, source = self._reference(
            ref, "features", lambda: {"features": self._features(ref).numpy()})
        feats_real = torch.from_numpy(arrays["features"])
        size = min(cfg.subset_size, len(feats_gen), len(feats_real))
        if size < 2:
            raise UsageError("KID needs at least 2 images on each side")
        out = kid_featuresdict_to_metric(
            {self.layer: feats_gen}, {self.layer: feats_real}, self.layer,
            kid_subsets=cfg.subsets, kid_subset_size=size, kid_kernel="poly",
            kid_kernel_poly_degree=cfg.degree, kid_kernel_poly_gamma=cfg.gamma,
            kid_kernel_poly_coef0=cfg.coef0, rng_seed=cfg.seed, verbose=False)
        self._report(gen, ref, reference=source, subsets=cfg.subsets, subset_size=size)
        return {"kid": float(out[KEY_METRIC_KID_MEAN]), "kid_std": float(out[KEY_METRIC_KID_STD]),
                "kid_subset_size": float(size)}


class ISC(_FidelityMetric):
    """``isc``: Inception Score of the generated images (``real`` is not used).

    Returns ``{"isc": mean, "isc_std": std over splits}``; higher is better. With
    ``lenet-mnist`` it is the classifier-based score on MNIST (at most 10; the MNIST test set
    scores close to it).
    """

    higher_is_better = True
    metric_key = "isc"

    def __init__(self, config: ISCConfig | None = None):
        super().__init__(config or ISCConfig())

    def __call__(self, generated: Any, real: Any = None) -> dict[str, float]:
        cfg = self.config
        gen = _Images(generated, "generated")
        splits = min(cfg.splits, gen.shape[0])
        mean, std = inception_score(self._features(gen), splits, cfg.shuffle, cfg.seed)
        self._report(gen, None, splits=splits)
        return {"isc": mean, "isc_std": std}


class PRC(_FidelityMetric):
    """``prc``: improved precision and recall with k-NN manifolds in feature space.

    Returns ``{"prc": F1 of the two, "prc_precision": ..., "prc_recall": ...}``; higher is
    better. Precision: share of generated images within some real image's k-NN ball;
    recall: share of real images within some generated image's k-NN ball.
    """

    higher_is_better = True
    metric_key = "prc"
    reference_kind = "features"

    def __init__(self, config: PRCConfig | None = None):
        super().__init__(config or PRCConfig())

    def __call__(self, generated: Any, real: Any) -> dict[str, float]:
        from torch_fidelity.metric_prc import (
            KEY_METRIC_F_SCORE,
            KEY_METRIC_PRECISION,
            KEY_METRIC_RECALL,
            prc_featuresdict_to_metric,
        )
        cfg = self.config
        gen, ref = _Images(generated, "generated"), _Images(real, "real")
        k = cfg.neighborhood
        if min(gen.shape[0], ref.shape[0]) <= k:
            raise UsageError(f"precision/recall with neighborhood {k} needs more than {k} "
                             "images on each side")
        feats_gen = self._features(gen)
        arrays, source = self._reference(
            ref, "features", lambda: {"features": self._features(ref).numpy()})
        out = prc_featuresdict_to_metric(
            {self.layer: feats_gen}, {self.layer: torch.from_numpy(arrays["features"])},
            self.layer, prc_neighborhood=k, prc_batch_size=cfg.distance_batch_size,
            save_cpu_ram=True, verbose=False)
        self._report(gen, ref, reference=source, neighborhood=k)
        return {"prc": float(out[KEY_METRIC_F_SCORE]),
                "prc_precision": float(out[KEY_METRIC_PRECISION]),
                "prc_recall": float(out[KEY_METRIC_RECALL])}
