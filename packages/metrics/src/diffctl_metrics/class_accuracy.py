"""Class accuracy of class-conditional samples: does a sample generated for class c look like
a c to a classifier?

The share of generated images whose predicted class (argmax of a classifier's logits) is the
class they were generated for; the per-class minimum shows a class the model cannot draw. The
classifier is a ``feature-extractor`` with a logits layer: the bundled LeNet (``lenet-mnist``)
for MNIST, or a plugin's classifier. Its floor is the classifier's own accuracy on real
labelled images (the evaluation passes a real labelled draw as the generated side), so a model
is read against what the classifier can do on real data, not against 1.0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from diffctl.errors import UsageError
from diffctl_metrics.configs import ClassAccuracyConfig
from diffctl_metrics.fidelity import (
    _Images,
    create_feature_extractor,
    extraction_device,
    image_features,
)


class ClassAccuracy:
    """``class-accuracy``: ``{"class-accuracy": share of samples classified as their class,
    "class_accuracy_min": the lowest per-class share}``; higher is better.

    Called as ``metric(generated, real, labels=...)`` with ``labels`` the (N,) classes the
    generated images were generated for; ``real`` and ``real_labels`` are accepted (the
    evaluation passes them to every metric that needs labels) but not used.
    """

    higher_is_better = True

    def __init__(self, config: ClassAccuracyConfig | None = None):
        self.config = config or ClassAccuracyConfig()
        self.metadata: dict[str, Any] = {}
        self._extractor: Any = None

    def predictions(self, images: Any, store: dict | None = None) -> np.ndarray:
        """The classifier's predicted class of each (N, C, H, W) image in [-1, 1]."""
        cfg = self.config
        if self._extractor is None:
            self._extractor = create_feature_extractor(cfg.feature_extractor, None,
                                                       cfg.feature_extractor_options)
        if cfg.logits_layer not in self._extractor.layers:
            raise UsageError(f"class-accuracy: feature-extractor '{cfg.feature_extractor}' has "
                             f"no layer {cfg.logits_layer!r} (it has "
                             f"{', '.join(self._extractor.layers)}); it needs a classifier")
        feats = image_features(self._extractor, _Images(images, "generated"),
                               extraction_device(cfg.device), cfg.batch_size, store)
        return feats[cfg.logits_layer].argmax(dim=1).numpy()

    def __call__(self, generated: Any, real: Any = None, *, labels: Any = None,
                 real_labels: Any = None, features: dict | None = None) -> dict[str, float]:
        if labels is None:
            raise UsageError("class-accuracy needs the class each sample was generated for "
                             "(labels=): a class-conditional model's samples")
        wanted = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels).reshape(-1)
        predicted = self.predictions(generated, features)
        if len(wanted) != len(predicted):
            raise UsageError(f"class-accuracy: {len(predicted)} samples but {len(wanted)} "
                             "labels")
        hit = predicted == wanted
        per_class = [float(hit[wanted == c].mean()) for c in np.unique(wanted)]
        self.metadata = {"metric": "class-accuracy",
                         "feature_extractor": self.config.feature_extractor,
                         "weights_sha256": self._extractor.weights_sha256(),
                         "logits_layer": self.config.logits_layer,
                         "num_generated": len(wanted), "num_classes": len(per_class),
                         "device": str(extraction_device(self.config.device))}
        return {"class-accuracy": float(hit.mean()), "class_accuracy_min": min(per_class)}
