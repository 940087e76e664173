"""Continuous-time rate RNN ``τ dr/dt = -r + f(W_rec r + W_in u + b + noise)`` (kind ``ctrnn``),
trained on task protocols.

spec.py (model and task schemas) · model.py (torch module) · train.py (Adam on a task) ·
brian2.py (Brian 2 backend) · report.py (figures) · run.py (``neurorec simulate`` / ``train``).
"""

from neurorec.families.base import register_family
from neurorec.families.ctrnn.model import CTRNN
from neurorec.families.ctrnn.spec import CTRNNSpec

register_family("ctrnn", CTRNNSpec, CTRNN, score="task_loss",
                capabilities=("brian2", "task", "resume"))

__all__ = ["CTRNN", "CTRNNSpec"]
