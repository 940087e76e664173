"""Conv-encoder + RNN video predictor (kind ``conv_rnn``)."""

import numpy as np

from neurorec.families.base import register_family
from neurorec.families.conv_rnn.conformance import conv_rnn_example
from neurorec.families.conv_rnn.model import ConvRNN
from neurorec.families.conv_rnn.spec import ConvRNNSpec

register_family("conv_rnn", ConvRNNSpec, ConvRNN, data=np.ndarray, score="reconstruction",
                capabilities=("resume",), example=conv_rnn_example)

__all__ = ["ConvRNN", "ConvRNNSpec"]
