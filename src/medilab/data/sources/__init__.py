"""The registered data sources: one module each, a config section (``data.source: NAME``) and
how it builds a datamodule for a task (see :mod:`medilab.data.sources.base`)."""
