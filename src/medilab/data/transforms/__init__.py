"""Pixel preparation (one module for every source) and augmentation."""
