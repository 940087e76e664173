"""neurorec: recurrent models of neural data, specified declaratively, fitted by likelihood."""

__version__ = "0.1.0"
