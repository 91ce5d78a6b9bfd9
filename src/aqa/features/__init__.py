"""I3D feature cache: the extract_features stage (`extract`) and its reader (`cache`)."""

from aqa.features.cache import FeatureCache, FeatureCacheError

__all__ = ["FeatureCache", "FeatureCacheError"]
