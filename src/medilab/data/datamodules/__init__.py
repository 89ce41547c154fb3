"""LightningDataModules per task family: classification arrays, segmentation image/mask pairs,
detection images with boxes."""
