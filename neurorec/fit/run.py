"""What a fit is told about its run (:class:`Run`) and what it records (:class:`FitLog`).

Every family's ``fit(data, *, progress, run=None)`` takes one :class:`Run`: where to keep
checkpoints, whether to continue from them, a wall-clock budget and what the run depends on
(a checkpoint written for another run is refused). The family passes it down to its engine
(:func:`neurorec.fit.lbfgs.fit_lbfgs`, :func:`neurorec.fit.engine.run_loop`, the session GLM's
chunk loop); nothing reaches an engine through global state.

Every engine records its run in one :class:`FitLog` (iterations, objective history, wall time,
convergence, the stop reason, and a family's own per-step curves in ``extras``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Run:
    """The run a fit belongs to (sklearn has no such thing; dynamax and nemos neither: this
    is what ``neurorec fit --resume`` and ``neurorec train --resume`` need).

    Attributes:
        checkpoint_dir: folder of the run's checkpoints; None: no checkpoints.
        resume: continue from the checkpoints found there (bitwise on CPU) instead of
            starting over; a missing file starts that stage from the beginning.
        budget_s: wall-clock budget in seconds for a family whose loop honours one (it stops
            at the next checkpoint boundary, resumable); None: no budget.
        fingerprint: what the run depends on (spec, data, seed, device, ...); a checkpoint
            written with another fingerprint is refused rather than silently continued.
        every: checkpoint after every ``every``-th block of the engine's check interval
            (and always when a loop stops).
    """

    checkpoint_dir: Path | None = None
    resume: bool = False
    budget_s: float | None = None
    fingerprint: Mapping[str, Any] = field(default_factory=dict)
    every: int = 1
    # How many numbered checkpoint files (``lbfgs-<i>.pt``, ``adam-<i>.pt``) the run has
    # handed out: a model may fit in several stages (the R-GLM's GLM, then the latent; a
    # held-back run, then a refit), each with its own file, numbered in the order the
    # stages run. Mutable state inside a frozen record on purpose: the settings are fixed,
    # the count belongs to the one run they describe (not compared, not shown).
    _issued: list[int] = field(default_factory=lambda: [0], init=False, compare=False,
                               repr=False)

    def __post_init__(self) -> None:
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, Path):
            object.__setattr__(self, "checkpoint_dir", Path(self.checkpoint_dir))
        object.__setattr__(self, "every", max(1, int(self.every)))
        object.__setattr__(self, "fingerprint", dict(self.fingerprint))
        if self.resume and self.checkpoint_dir is None:
            raise ValueError("Run: resume needs a checkpoint_dir")

    @property
    def checkpoints(self) -> bool:
        """Whether this run keeps checkpoints."""
        return self.checkpoint_dir is not None

    def path(self, name: str) -> Path | None:
        """``checkpoint_dir / name``, or None without checkpoints."""
        return None if self.checkpoint_dir is None else self.checkpoint_dir / name

    def next_file(self, prefix: str) -> Path | None:
        """The next stage's checkpoint file, ``<prefix>-<i>.pt`` with ``i`` counting every
        numbered file of this run (None without checkpoints)."""
        if self.checkpoint_dir is None:
            return None
        i = self._issued[0]
        self._issued[0] += 1
        return self.checkpoint_dir / f"{prefix}-{i}.pt"

    def resumes(self, path: Path | None) -> bool:
        """Whether the stage checkpointing to ``path`` continues from it (resume asked and
        the file is there)."""
        return self.resume and path is not None and path.is_file()


@dataclass
class FitLog:
    """What happened during a fit, for ``metrics.json``, reports and checkpoints.

    Attributes:
        n_iter: iterations (or steps, epochs, valid checks: the engine's unit) run in all.
        history: one dict per recorded iteration (``objective``, ``validation_nll``,
            ``max_abs_grad``, ``loss``, ``seconds``, ...).
        fit_time_s: wall time of the fit in seconds (a resumed run includes the time before).
        converged: whether the fit met its convergence test (or stopped early on purpose).
        reason: why it stopped (``"gradient below tol"``, ``"n_iter"``, ``"early_stopping"``,
            ``"budget"``, ...).
        n_evals, final_objective, max_abs_grad, best_validation_nll, optimizer: the
            optimiser's counts and end point (L-BFGS, Newton, Adam).
        validation: ``(iteration, value)`` pairs of the held-out objective (lower is better).
        best_iteration, best_value: the iteration whose state was kept and its held-out value.
        resumed_from: the iteration a resumed run started after, else None.
        extras: a family's own per-step curves (name -> list, e.g. the LM's ``tokens``,
            ``valid_ppl``; the task RNN's ``train_loss``) and totals; each is also readable as
            an attribute (``log.valid_ppl``).
    """

    n_iter: int = 0
    history: list[dict] = field(default_factory=list)
    fit_time_s: float = 0.0
    converged: bool = False
    reason: str = ""
    n_evals: int = 0
    final_objective: float = float("nan")
    max_abs_grad: float = float("nan")
    best_validation_nll: float | None = None
    optimizer: str = "L-BFGS"
    validation: list[tuple[int, float]] = field(default_factory=list)
    best_iteration: int | None = None
    best_value: float | None = None
    resumed_from: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    #: always in :meth:`to_dict` (the ``convergence`` keys of ``metrics.json``); the other
    #: fields only when set
    SUMMARY = ("converged", "reason", "n_iter", "n_evals", "final_objective", "max_abs_grad",
               "best_validation_nll", "fit_time_s", "history", "optimizer")

    def __getattr__(self, name: str) -> Any:
        # only called for names that are not fields: a family's curve in ``extras``
        extras = self.__dict__.get("extras")
        if extras is not None and not name.startswith("_") and name in extras:
            return extras[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data: :attr:`SUMMARY` always, the others where set."""
        out = {k: getattr(self, k) for k in self.SUMMARY}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name not in out and value not in (None, [], {}):
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitLog:
        """The log :meth:`to_dict` wrote."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def column(self, key: str) -> list:
        """One curve of :attr:`history` (``[row[key] for row in history]``)."""
        return [row[key] for row in self.history]


__all__ = ["FitLog", "Run"]
