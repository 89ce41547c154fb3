"""LightningModules and evaluation/prediction per task family."""
