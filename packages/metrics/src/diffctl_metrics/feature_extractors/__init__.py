"""Feature extractors for the torch-fidelity metrics (kind ``feature-extractor``).

Each is a :class:`~diffctl_metrics.feature_extractors.base.FidelityFeatureExtractor`: a
torch-fidelity ``FeatureExtractorBase`` registered in torch-fidelity's registry under the same
name, plus the local weights file it uses and that file's sha256.
"""
