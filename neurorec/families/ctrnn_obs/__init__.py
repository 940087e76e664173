"""Data-constrained continuous-time RNN with a Poisson / Bernoulli readout of recorded units
(kind ``ctrnn_obs``), fitted by likelihood (BPTT)."""

from neurorec.families.base import register_family
from neurorec.families.ctrnn_obs.model import CTRNNObs
from neurorec.families.ctrnn_obs.spec import CTRNNObsSpec

register_family("ctrnn_obs", CTRNNObsSpec, CTRNNObs,
                capabilities=("binned_trials", "heldout_neurons"))

__all__ = ["CTRNNObs", "CTRNNObsSpec"]
