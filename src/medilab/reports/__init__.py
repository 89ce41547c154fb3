"""Plots and HTML reports, built from the files of a run folder."""
