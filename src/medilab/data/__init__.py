"""Manifests, sources, splits, datasets, transforms and caches."""
