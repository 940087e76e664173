"""Spike-and-slab RNN learned from whitened natural movies (kind ``ssrnn``): greedy filtering
and an STDP-like rule for ``R``."""

import numpy as np

from neurorec.families.base import register_family
from neurorec.families.ssrnn.conformance import ssrnn_example
from neurorec.families.ssrnn.model import SpikeSlabRNN
from neurorec.families.ssrnn.spec import SSRNNSpec

register_family("ssrnn", SSRNNSpec, SpikeSlabRNN, data=np.ndarray, score="reconstruction",
                capabilities=("resume",), example=ssrnn_example,
                commands={"train_stimulus": "neurorec.workflows.probe:train_on_stimulus",
                          "probe": "neurorec.workflows.probe:ssrnn_target"})

__all__ = ["SSRNNSpec", "SpikeSlabRNN"]
