"""The run's plots: losses and discriminator outputs, and sample quality, against steps."""

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
    return _save(fig, path)


def plot_quality(history: pd.DataFrame, path: Path) -> Path:
    """Two panels over the evaluation steps: SWD (mean bold, per pyramid level) and MS-SSIM."""
    sns.set_theme(style="darkgrid")
    evaluated = history[history["swd_mean"].notna()]
    levels = [column for column in evaluated if column.startswith("swd_l") and evaluated[column].notna().any()]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    long = evaluated.melt(id_vars="step", value_vars=levels, var_name="level", value_name="SWD")
    sns.lineplot(data=long, x="step", y="SWD", hue="level", alpha=0.5, marker="o", ax=top)
    top.plot(evaluated["step"], evaluated["swd_mean"], color="black", linewidth=2, marker="o", label="swd_mean")
    top.legend()
    top.set_title("Samples vs held-out frames: SWD (lower is better)")
    sns.lineplot(data=evaluated, x="step", y="ms_ssim", marker="o", ax=bottom, label="samples")
    if evaluated["ms_ssim_real"].notna().any():
        bottom.plot(evaluated["step"], evaluated["ms_ssim_real"], color="grey", linestyle="--", label="held-out frames")
    bottom.set_ylabel("MS-SSIM between samples\n(higher: less diverse)")
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)
    return path
