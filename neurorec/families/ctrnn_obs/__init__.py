"""Data-constrained continuous-time RNN with a Poisson / Bernoulli readout of recorded units
(kind ``ctrnn_obs``), fitted by likelihood (BPTT, Adam on the shared engine: checkpoints in
``neurorec fit``'s ``OUT.partial/``, ``--resume`` continues bitwise)."""

from neurorec.families.base import register_family
from neurorec.families.ctrnn_obs.conformance import (
    ctrnn_obs_example,
    ctrnn_obs_session_example,
)
from neurorec.families.ctrnn_obs.model import CTRNNObs
from neurorec.families.ctrnn_obs.spec import CTRNNObsSpec
from neurorec.families.glm.resources import glm_fit_memory

register_family("ctrnn_obs", CTRNNObsSpec, CTRNNObs,
                capabilities=("binned_trials", "heldout_neurons", "resume"),
                example=ctrnn_obs_example, memory_estimate=glm_fit_memory,
                commands={"probe": "neurorec.workflows.probe:ctrnn_obs_target",
                          "session_model": "neurorec.families.ctrnn_obs.model:CTRNNObs"},
                session_example=ctrnn_obs_session_example)

__all__ = ["CTRNNObs", "CTRNNObsSpec"]
