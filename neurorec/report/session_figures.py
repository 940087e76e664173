"""Figures of a session fit: tuning curves, data beside the model's partial dependence."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tuning_figure(tuning: dict[str, np.ndarray], name: str, per_neuron_bps: np.ndarray,
                  unit_ids: np.ndarray, path: Path, n_units: int = 4) -> Path:
    """Tuning of the ``n_units`` units most modulated by covariate
    ``name``: 1-D: data (grey) and model (red) curves; 2-D: data and model maps side by side.
    ``tuning``: the arrays of :func:`neurorec.workflows.session_fit.tuning_curves`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data, model = tuning[f"{name}_data"], tuning[f"{name}_model"]
    # the units this covariate modulates most (model's max / min), ties by bits/spike
    flat = model.reshape(len(model), -1)
    depth = np.log(np.max(flat, axis=1) / np.maximum(np.min(flat, axis=1), 1e-12))
    order = np.lexsort((-np.nan_to_num(per_neuron_bps, nan=-np.inf), -depth))[:n_units]
    if data.ndim == 2:
        c = tuning[f"{name}_centres_0"]
        fig, axes = plt.subplots(1, len(order), figsize=(3 * len(order), 2.6), squeeze=False)
        for ax, u in zip(axes[0], order, strict=False):
            ax.plot(c, data[u], color="0.5", label="data")
            ax.plot(c, model[u], color="tab:red", label="model")
            ax.set_title(f"unit {unit_ids[u]}", fontsize=9)
            ax.set_xlabel(name)
        axes[0, 0].set_ylabel("rate (Hz)")
        axes[0, 0].legend(fontsize=8)
    else:
        fig, axes = plt.subplots(2, len(order), figsize=(2.6 * len(order), 5), squeeze=False)
        extent = None
        cx, cy = tuning[f"{name}_centres_0"], tuning[f"{name}_centres_1"]
        extent = (cx[0], cx[-1], cy[0], cy[-1])
        for j, u in enumerate(order):
            vmax = np.nanmax([np.nanmax(data[u]), np.nanmax(model[u])])
            for i, (arr, label) in enumerate(((data, "data"), (model, "model"))):
                ax = axes[i, j]
                im = ax.imshow(arr[u].T, origin="lower", extent=extent, vmin=0, vmax=vmax,
                               cmap="viridis", aspect="auto")
                ax.set_title(f"unit {unit_ids[u]}: {label}", fontsize=9)
                ax.set_xticks([])
                ax.set_yticks([])
            fig.colorbar(im, ax=axes[:, j], shrink=0.6, label="Hz")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


__all__ = ["tuning_figure"]
