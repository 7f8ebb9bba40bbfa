"""Shared figure plumbing for reports: a headless pyplot and one atomic, uniformly styled save."""
from __future__ import annotations

import io
from pathlib import Path


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: Path, axes=(), legend_size=None) -> str:
    """Grid and legend on `axes`, then write the PNG atomically and close the figure; returns its file name."""
    from .runs import atomic_write_bytes
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=legend_size)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    pyplot().close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path).name
