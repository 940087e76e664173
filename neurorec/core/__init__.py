"""Pure building blocks with no imports from above: observation models, bases, metrics,
errors, atomic outputs."""
