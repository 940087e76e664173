"""Continuous-time rate RNN ``τ dr/dt = -r + f(W_rec r + W_in u + b + noise)`` (kind ``ctrnn``),
trained on task protocols.

spec.py (model and task schemas) · model.py (torch module) · estimator.py (the kind's
Estimator, ``TaskRNN``) · train.py (Adam on a task, on the shared engine) · brian2.py (Brian 2
backend) · report.py (figures) · run.py (``neurorec simulate`` / ``train``) · conformance.py
(the conformance suite's example).
"""

from neurorec.families.base import register_family
from neurorec.families.ctrnn.conformance import ctrnn_example
from neurorec.families.ctrnn.estimator import TaskRNN
from neurorec.families.ctrnn.model import CTRNN
from neurorec.families.ctrnn.spec import CTRNNSpec
from neurorec.tasks.base import Task

register_family("ctrnn", CTRNNSpec, TaskRNN, data=Task, score="task_loss",
                capabilities=("brian2", "task", "resume"), example=ctrnn_example,
                commands={"train_task": "neurorec.families.ctrnn.run:train_to_dir"})

__all__ = ["CTRNN", "CTRNNSpec", "TaskRNN"]
