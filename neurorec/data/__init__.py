"""Recorded data: containers, NWB input/output, validation, binning and train/test splits."""

from neurorec.data.binning import bin_trials, split_trials
from neurorec.data.nwb import read_nwb, write_nwb
from neurorec.data.recording import BinnedTrials, Recording
from neurorec.data.validation import validate_recording

__all__ = [
    "BinnedTrials",
    "Recording",
    "bin_trials",
    "read_nwb",
    "split_trials",
    "validate_recording",
    "write_nwb",
]
