"""Discrete-time tanh RNN classifying sequential MNIST (kind ``rnn``)."""

from neurorec.data.sequences import LabelledSequences
from neurorec.families.base import register_family
from neurorec.families.rnn.conformance import rnn_example
from neurorec.families.rnn.model import SequenceRNN
from neurorec.families.rnn.spec import RNNSpec

register_family("rnn", RNNSpec, SequenceRNN, score="accuracy", data=LabelledSequences,
                capabilities=("resume",), example=rnn_example)

__all__ = ["RNNSpec", "SequenceRNN"]
