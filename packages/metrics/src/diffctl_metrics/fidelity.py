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
``cache``, ``stats-file`` or ``features-file``) and torch-fidelity's version.

Feature extractors are ``feature-extractor`` components built through diffctl's registry (the
metrics' ``feature_extractor`` and ``feature_extractor_options``), so a plugin's extractor is
used exactly like the built-in ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffctl.errors import UsageError
from diffctl_metrics.configs import FIDConfig, ISCConfig, KIDConfig, PRCConfig
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

#: what a feature-extractor component must offer (see ``FidelityFeatureExtractor``)
_EXTRACTOR_API = ("name", "layers", "layer_for", "extract", "weights_sha256", "describe",
                  "resize_mode")


def create_feature_extractor(name: str, weights: str | None = None,
                             options: dict[str, Any] | None = None) -> FidelityFeatureExtractor:
    """The ``feature-extractor`` component ``name`` from diffctl's registry, built from
    ``options`` (its own config) with ``weights_path = weights`` when given. The built-ins
    (``inception-v3-compat``, ``lenet-mnist``) take the same path as a plugin's extractor."""
    from diffctl.registry import get_registry
    values = dict(options or {})
    if weights is not None:
        values["weights_path"] = weights
    extractor = get_registry().create("feature-extractor", name, values)
    missing = [a for a in _EXTRACTOR_API if not hasattr(extractor, a)]
    if missing:
        raise UsageError(f"feature-extractor '{name}' lacks {', '.join(missing)} (subclass "
                         "diffctl_metrics.feature_extractors.base.FidelityFeatureExtractor)")
    return extractor


def extractor_options(extractor: FidelityFeatureExtractor) -> dict[str, Any]:
    """The extractor's config without ``weights_path`` (the weights count by their sha256):
    part of the feature memo key, the cache key and the identity of reference files, so that
    an extractor option that changes the features never reuses features made without it."""
    config = getattr(extractor, "config", None)
    if not hasattr(config, "model_dump"):
        return {}
    return {k: v for k, v in config.model_dump(mode="json").items() if k != "weights_path"}


def extraction_device(device: str) -> torch.device:
    """Where torch-fidelity extracts features for a metric's ``device`` option: ``auto`` ->
    cuda when available, else cpu; cpu and cuda[:N] as given; any other type (mps) -> cpu,
    since torch-fidelity's extraction loop knows the CPU and CUDA only."""
    dev = resolve_device(device)
    return dev if dev.type in ("cpu", "cuda") else torch.device("cpu")


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


#: Features of image sets by (content, extractor, weights, options, device) -> {layer: (N, D)}.
#: An evaluation that scores several metrics on the same (generated, real) pair passes one such
#: dict to every call (``features=``), so fid, kid, isc and prc share one forward pass per
#: image set; a call without one computes its own. Nothing outlives the dict's owner.
FeatureStore = dict


#: Batches per extraction call when progress is reported: an image set longer than this many
#: batches is extracted in chunks of whole batches (the same batches, so the same features).
PROGRESS_BATCHES = 4


def image_features(extractor: FidelityFeatureExtractor, images: _Images, device: torch.device,
                   batch_size: int, store: FeatureStore | None = None,
                   on_progress: Callable[[int, int], None] | None = None
                   ) -> dict[str, torch.Tensor]:
    """{layer: float32 (N, D)} for all of ``extractor.layers``, kept in ``store``.
    ``on_progress(done, total)`` follows the images of a set longer than
    :data:`PROGRESS_BATCHES` batches."""
    key = (images.sha256, extractor.name, extractor.weights_sha256(),
           json.dumps(extractor_options(extractor), sort_keys=True), str(device))
    feats = store.get(key) if store is not None else None
    if feats is None:
        feats = _extract(extractor, images.u8, device, batch_size, on_progress)
        if store is not None:
            store[key] = feats
    return feats


def _extract(extractor: FidelityFeatureExtractor, u8: torch.Tensor, device: torch.device,
             batch_size: int, on_progress: Callable[[int, int], None] | None
             ) -> dict[str, torch.Tensor]:
    """One extraction call, or chunks of whole batches with progress between them."""
    total = len(u8)
    chunk = batch_size * PROGRESS_BATCHES
    if on_progress is None or total <= chunk:
        return extractor.extract(u8, device, batch_size)
    parts: list[dict[str, torch.Tensor]] = []
    for start in range(0, total, chunk):
        parts.append(extractor.extract(u8[start:start + chunk], device, batch_size))
        on_progress(min(start + chunk, total), total)
    return {layer: torch.cat([p[layer] for p in parts]) for layer in parts[0]}


def extract_features(extractor: str | FidelityFeatureExtractor, images: Any,
                     device: str = "auto", batch_size: int = 256,
                     on_progress: Callable[[int, int], None] | None = None
                     ) -> dict[str, torch.Tensor]:
    """{layer: float32 (N, D)} features of (N, C, H, W) images in [-1, 1] through
    torch-fidelity, for an extractor name or component; ``on_progress`` as in
    :func:`image_features`."""
    if isinstance(extractor, str):
        extractor = create_feature_extractor(extractor)
    return image_features(extractor, _Images(images, "input"), extraction_device(device),
                          batch_size, on_progress=on_progress)


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
#: how the real side of a call was obtained, by reference kind, when it came from a file
_FILE_SOURCE = {"fid-stats": "stats-file", "features": "features-file"}


class _FidelityMetric:
    """Shared machinery: extractor, device, features, reference cache and files, metadata."""

    higher_is_better = False
    metric_key = ""  # torch-fidelity's metric name: fid | kid | isc | prc
    reference_kind: str | None = None  # what the real side is: fid-stats | features | None
    reference_field: str | None = None  # the config field of a precomputed reference file

    def __init__(self, config: Any):
        self.config = config
        self.metadata: dict[str, Any] = {}
        #: ``on_progress(done, total)`` over the images of long feature extractions; set by
        #: the caller (diffctl.runs.evaluation.with_progress)
        self.on_progress: Callable[[int, int], None] | None = None
        self._reference_path: str | None = None
        self._extractor: FidelityFeatureExtractor | None = None

    @property
    def extractor(self) -> FidelityFeatureExtractor:
        if self._extractor is None:
            cfg = self.config
            self._extractor = create_feature_extractor(cfg.feature_extractor,
                                                       cfg.feature_extractor_weights,
                                                       cfg.feature_extractor_options)
        return self._extractor

    @property
    def layer(self) -> str:
        return self.extractor.layer_for(self.metric_key)

    @property
    def device(self) -> torch.device:
        """The device the extractor runs on (see :func:`extraction_device`)."""
        return extraction_device(self.config.device)

    def _features(self, images: _Images, store: FeatureStore | None = None) -> torch.Tensor:
        """Features of ``images`` at this metric's layer, from ``store`` when given."""
        feats = image_features(self.extractor, images, self.device, self.config.batch_size,
                               store, self.on_progress)
        return feats[self.layer]

    # -- the real side -------------------------------------------------------------------------
    def _compute_reference(self, real: _Images, store: FeatureStore | None = None
                           ) -> dict[str, np.ndarray]:
        """The real side from the images: {mu, sigma} (fid-stats) or {features}."""
        feats = self._features(real, store)
        if self.reference_kind == "fid-stats":
            return gaussian_stats(feats)
        return {"features": feats.numpy()}

    def _reference(self, real: _Images, store: FeatureStore | None = None
                   ) -> tuple[dict[str, np.ndarray], str]:
        """The real side of ``real``, through the on-disk cache when enabled. Returns the
        arrays and where they came from (``computed`` or ``cache``); the cache file is
        remembered for the report."""
        self._reference_path = None
        compute = lambda: self._compute_reference(real, store)  # noqa: E731
        if not getattr(self.config, "cache", False):
            return compute(), "computed"
        import torch_fidelity
        ext, kind = self.extractor, str(self.reference_kind)
        key = reference_key(kind=kind, images_sha256=real.sha256, shape=real.shape,
                            extractor=ext.name, layer=self.layer,
                            weights_sha256=ext.weights_sha256(),
                            extractor_options=extractor_options(ext),
                            fidelity_version=torch_fidelity.__version__,
                            device_type=self.device.type)
        cache = StatsCache(self.config.cache_dir)
        hit = cache.get(kind, key, ext.name)
        self._reference_path = str(cache.path(kind, key, ext.name))
        if hit is not None:
            return hit, "cache"
        arrays = compute()
        cache.put(kind, key, ext.name, arrays,
                  {**self._identity(), "num_samples": real.shape[0], "shape": real.shape,
                   "device_type": self.device.type})
        return arrays, "computed"

    def _real_side(self, real: Any, store: FeatureStore | None = None
                   ) -> tuple[dict[str, np.ndarray], str, int | None]:
        """(arrays, source, number of real images): from the configured reference file, else
        from ``real`` (through the cache)."""
        configured = getattr(self.config, str(self.reference_field), None)
        if configured:
            arrays, num = self.load_reference(configured)
            self._reference_path = str(Path(configured).expanduser())
            return arrays, _FILE_SOURCE[str(self.reference_kind)], num
        ref = _Images(real, f"real (or set {self.reference_field})")
        arrays, source = self._reference(ref, store)
        return arrays, source, ref.shape[0]

    def _identity(self) -> dict[str, Any]:
        ext = self.extractor
        return {**ext.describe(), "feature_extractor": ext.name,
                "feature_extractor_options": extractor_options(ext),
                "weights_sha256": ext.weights_sha256(), "feature_layer": self.layer}

    def prepare_reference(self, real: Any, folder: str | Path | None = None
                          ) -> tuple[str, dict[str, Any]]:
        """Compute the real side once, before many calls with the same ``real``, e.g. in the
        parent of ``diffctl eval --checkpoints all`` before its worker processes start.

        Returns ``(source, options)``: ``source`` is ``computed``, ``cache`` or ``none``
        (nothing to prepare: no real side, or a reference file already configured), and
        ``options`` are config overrides under which a fresh metric uses the prepared result
        instead of computing it again. With the cache on, the result is a cache entry and
        ``options`` is empty; with ``cache: false`` it is written to ``folder`` as a reference
        file (fid: ``reference_stats``, kid/prc: ``reference_features``) that ``options``
        names; without a ``folder`` nothing is prepared then."""
        if self.reference_kind is None or getattr(self.config, str(self.reference_field),
                                                  None):
            return "none", {}
        if getattr(self.config, "cache", False):
            return self._reference(_Images(real, "real"))[1], {}
        if folder is None:
            return "none", {}
        path = Path(folder) / f"{self.metric_key}-{self.reference_kind}.npz"
        self.save_reference(real, path)
        return "computed", {str(self.reference_field): str(path)}

    def save_reference(self, real: Any, path: str | Path) -> Path:
        """Write the real side of ``real`` to an ``.npz`` usable as this metric's reference
        file (its arrays, ``num_samples``, and the extractor identity in ``meta``)."""
        ref = _Images(real, "real")
        arrays, _ = self._reference(ref)
        path = Path(path).expanduser()
        write_npz_atomic(path, {**arrays, "num_samples": np.array(ref.shape[0])},
                         {**self._identity(), "kind": self.reference_kind, "shape": ref.shape,
                          "images_sha256": ref.sha256})
        return path

    save_reference_features = save_reference  # kid and prc: ``reference_features`` files

    def load_reference(self, path: str | Path) -> tuple[dict[str, np.ndarray], int | None]:
        """The arrays of a reference file and its image count (None when unknown), checked
        against this metric's extractor, layer and weights when the file records them."""
        field = self.reference_field
        path = Path(path).expanduser()
        if not path.is_file():
            raise UsageError(f"{field} file not found: {path}")
        try:
            arrays, meta = read_npz(path)
        except Exception as exc:
            raise UsageError(f"cannot read {field} {path}: {type(exc).__name__}: "
                             f"{exc}") from None
        ext = self.extractor
        checks: tuple[tuple[str, Callable[[], Any]], ...] = (
            ("feature_extractor", lambda: ext.name), ("feature_layer", lambda: self.layer),
            ("weights_sha256", ext.weights_sha256),
            ("feature_extractor_options", lambda: extractor_options(ext)))
        for key, mine in checks:
            if key in meta and meta[key] != mine():
                raise UsageError(f"{field} {path} were computed with {key} "
                                 f"{meta[key]}, not {mine()}")
        num = int(arrays["num_samples"]) if "num_samples" in arrays else None
        return self._checked_reference(path, arrays), num

    def _checked_reference(self, path: Path, arrays: dict[str, np.ndarray]
                           ) -> dict[str, np.ndarray]:
        """The reference arrays this metric needs from a file (subclasses check shapes)."""
        features = arrays.get("features")
        if features is None or features.ndim != 2:
            raise UsageError(f"{self.reference_field} {path} lacks a 2-D array features")
        return {"features": features}

    def _report(self, generated: _Images, num_real: int | None, **extra: Any) -> None:
        """Fill ``metadata`` (the keys are listed in the package README)."""
        import torch_fidelity
        height, width = generated.shape[-2:]
        self.metadata = {
            "metric": self.metric_key,
            **self._identity(),
            "num_generated": generated.shape[0],
            "num_real": num_real,
            "image_size": [height, width],
            "resize": self.extractor.resize_mode(height, width),
            "reference": None,
            "reference_path": self._reference_path,
            "device": str(self.device),
            "device_requested": self.config.device,
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
    reference_field = "reference_stats"

    def __init__(self, config: FIDConfig | None = None):
        super().__init__(config or FIDConfig())

    def __call__(self, generated: Any, real: Any = None, *,
                 features: FeatureStore | None = None) -> dict[str, float]:
        gen = _Images(generated, "generated")
        stats_real, source, num_real = self._real_side(real, features)  # first: fails fast
        stats_gen = gaussian_stats(self._features(gen, features))
        value = frechet_distance(stats_gen, stats_real)
        self._report(gen, num_real, reference=source)
        return {"fid": value}

    def reference_stats(self, real: Any) -> dict[str, np.ndarray]:
        """{mu, sigma} of ``real`` with this metric's extractor (through the cache)."""
        return self._reference(_Images(real, "real"))[0]

    def save_reference_stats(self, real: Any, path: str | Path) -> Path:
        """Write the statistics of ``real`` to an ``.npz`` usable as ``reference_stats``
        (arrays ``mu``, ``sigma``, ``num_samples``; the extractor identity in ``meta``)."""
        return self.save_reference(real, path)

    def _checked_reference(self, path: Path, arrays: dict[str, np.ndarray]
                           ) -> dict[str, np.ndarray]:
        if "mu" not in arrays or "sigma" not in arrays:
            raise UsageError(f"reference_stats {path} lacks the arrays mu and sigma")
        mu, sigma = arrays["mu"], arrays["sigma"]
        if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
            raise UsageError(f"reference_stats {path}: mu {mu.shape} / sigma {sigma.shape} are "
                             "not a mean vector and its covariance")
        return {"mu": mu, "sigma": sigma}


class KID(_FidelityMetric):
    """``kid``: unbiased polynomial-kernel MMD² of the features, averaged over subsets.

    Returns ``{"kid": mean, "kid_std": std over subsets, "kid_subset_size": size used}``.
    Centred on zero (it can be slightly negative); lower is better. The real side is
    ``reference_features`` when set, else the features of ``real`` (through the cache).
    """

    metric_key = "kid"
    zero_centred = True  # unbiased MMD^2: its floor is read at the 95th percentile
    reference_kind = "features"
    reference_field = "reference_features"

    def __init__(self, config: KIDConfig | None = None):
        super().__init__(config or KIDConfig())

    def __call__(self, generated: Any, real: Any = None, *,
                 features: FeatureStore | None = None) -> dict[str, float]:
        from torch_fidelity.metric_kid import (
            KEY_METRIC_KID_MEAN,
            KEY_METRIC_KID_STD,
            kid_featuresdict_to_metric,
        )
        cfg = self.config
        gen = _Images(generated, "generated")
        arrays, source, num_real = self._real_side(real, features)
        feats_gen = self._features(gen, features)
        feats_real = torch.from_numpy(arrays["features"])
        size = min(cfg.subset_size, len(feats_gen), len(feats_real))
        if size < 2:
            raise UsageError("KID needs at least 2 images on each side")
        out = kid_featuresdict_to_metric(
            {self.layer: feats_gen}, {self.layer: feats_real}, self.layer,
            kid_subsets=cfg.subsets, kid_subset_size=size, kid_kernel="poly",
            kid_kernel_poly_degree=cfg.degree, kid_kernel_poly_gamma=cfg.gamma,
            kid_kernel_poly_coef0=cfg.coef0, rng_seed=cfg.seed, verbose=False)
        self._report(gen, num_real, reference=source, subsets=cfg.subsets, subset_size=size)
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

    def __call__(self, generated: Any, real: Any = None, *,
                 features: FeatureStore | None = None) -> dict[str, float]:
        cfg = self.config
        gen = _Images(generated, "generated")
        splits = min(cfg.splits, gen.shape[0])
        mean, std = inception_score(self._features(gen, features), splits, cfg.shuffle,
                                    cfg.seed)
        self._report(gen, None, splits=splits)
        return {"isc": mean, "isc_std": std}


class PRC(_FidelityMetric):
    """``prc``: improved precision and recall with k-NN manifolds in feature space.

    Returns ``{"prc": F1 of the two, "prc_precision": ..., "prc_recall": ...}``; higher is
    better. Precision: share of generated images within some real image's k-NN ball;
    recall: share of real images within some generated image's k-NN ball. The real side is
    ``reference_features`` when set, else the features of ``real`` (through the cache).
    """

    higher_is_better = True
    metric_key = "prc"
    reference_kind = "features"
    reference_field = "reference_features"

    def __init__(self, config: PRCConfig | None = None):
        super().__init__(config or PRCConfig())

    def __call__(self, generated: Any, real: Any = None, *,
                 features: FeatureStore | None = None) -> dict[str, float]:
        from torch_fidelity.metric_prc import (
            KEY_METRIC_F_SCORE,
            KEY_METRIC_PRECISION,
            KEY_METRIC_RECALL,
            prc_featuresdict_to_metric,
        )
        cfg = self.config
        gen = _Images(generated, "generated")
        k = cfg.neighborhood
        arrays, source, num_real = self._real_side(real, features)
        feats_real = torch.from_numpy(arrays["features"])
        if min(gen.shape[0], len(feats_real)) <= k:
            raise UsageError(f"precision/recall with neighborhood {k} needs more than {k} "
                             "images on each side")
        feats_gen = self._features(gen, features)
        out = prc_featuresdict_to_metric(
            {self.layer: feats_gen}, {self.layer: feats_real},
            self.layer, prc_neighborhood=k, prc_batch_size=cfg.distance_batch_size,
            save_cpu_ram=True, verbose=False)
        self._report(gen, num_real, reference=source, neighborhood=k)
        return {"prc": float(out[KEY_METRIC_F_SCORE]),
                "prc_precision": float(out[KEY_METRIC_PRECISION]),
                "prc_recall": float(out[KEY_METRIC_RECALL])}

