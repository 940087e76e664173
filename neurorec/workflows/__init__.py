"""Workflows over the families: the fit pipeline, co-smoothing, sweeps, the analyses' job
runner and time budgets, memory estimates, reloading fits, fit output directories."""
