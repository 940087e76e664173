"""Recorded data: containers, NWB input/output, validation, binning and train/test splits.

Trials: :class:`BinnedTrials` (``bin_trials``, ``read_nwb``). Continuous sessions:
:class:`BinnedSession` (``from_pynapple``, ``load_session_nwb``, ``write_session_nwb`` in
:mod:`neurorec.data.sessions_io`; ``blocked_folds``, ``default_split`` in
:mod:`neurorec.data.session_splits`).
"""

from neurorec.data.binning import bin_trials, split_trials
from neurorec.data.nwb import read_nwb, write_nwb
from neurorec.data.recording import BinnedTrials, Recording
from neurorec.data.session import BinnedSession
from neurorec.data.session_splits import blocked_folds, default_split
from neurorec.data.sessions_io import from_pynapple, load_session_nwb, write_session_nwb
from neurorec.data.validation import validate_recording

__all__ = [
    "BinnedSession",
    "BinnedTrials",
    "Recording",
    "bin_trials",
    "blocked_folds",
    "default_split",
    "from_pynapple",
    "load_session_nwb",
    "read_nwb",
    "split_trials",
    "validate_recording",
    "write_nwb",
    "write_session_nwb",
]
