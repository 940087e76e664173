"""Spike-and-slab RNN learned from whitened natural movies (kind ``ssrnn``): greedy filtering
and an STDP-like rule for ``R``."""

from neurorec.families.base import register_family
from neurorec.families.ssrnn.conformance import ssrnn_example
from neurorec.families.ssrnn.model import SpikeSlabRNN
from neurorec.families.ssrnn.spec import SSRNNSpec

register_family("ssrnn", SSRNNSpec, SpikeSlabRNN, score="reconstruction",
                capabilities=("resume",), example=ssrnn_example)

__all__ = ["SSRNNSpec", "SpikeSlabRNN"]
