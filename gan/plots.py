"""The loss plot: losses and discriminator outputs against steps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # workers have no display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from synthwave.atomic import atomic_open  # noqa: E402


def plot_losses(history: pd.DataFrame, path: Path) -> Path:
    """Two panels: G and D losses, and mean D(x) / D(G(z)); raw steps faint, smoothed bold."""
    sns.set_theme(style="darkgrid")
    window = max(1, len(history) // 50)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for axis, columns, label in ((top, ["g_loss", "d_loss"], "loss"), (bottom, ["d_real", "d_fake"], "mean D")):
        long = history.melt(id_vars="step", value_vars=columns, var_name="series", value_name=label)
        sns.lineplot(data=long, x="step", y=label, hue="series", alpha=0.25, legend=False, ax=axis)
        long[label] = long.groupby("series")[label].transform(lambda s: s.rolling(window, min_periods=1).mean())
        sns.lineplot(data=long, x="step", y=label, hue="series", ax=axis)
    top.set_title("DCGAN training")
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)
    return path
