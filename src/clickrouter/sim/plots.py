"""Figures of a world for the docs: ``python -m clickrouter.sim.plots docs/img``.

Writes ``sim-diurnal.png`` (configured curve vs local hours observed in
several zones, and the global UTC traffic), ``sim-base-rates.png`` (campaign
base rates and the spread of true P(sale)) and ``sim-delays.png`` (the sale
delay CDF with its knots).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from clickrouter.extras import import_optional
from clickrouter.sim.truth import sigmoid
from clickrouter.sim.world import World

ZONES = ("Asia/Kolkata", "America/New_York", "Europe/Paris", "Asia/Tokyo", "America/Sao_Paulo")


def _pyplot() -> Any:
    matplotlib = import_optional("matplotlib", "demo", "clickrouter.sim.plots")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_diurnal(world: World, path: Path, n: int = 400_000) -> None:
    """Local-hour histograms per zone against the configured curve; UTC total traffic."""
    plt = _pyplot()
    draw = world.draw_spread(np.random.default_rng(0), n)
    curve = np.array(world.config.diurnal_curve)
    fig, (local, utc) = plt.subplots(1, 2, figsize=(11, 4))
    local.plot(range(24), curve / curve.sum(), "k-", lw=3, alpha=0.4, label="configured")
    for name in ZONES:
        rows = draw.zone == world.population.zones.index(name)
        share = np.bincount(draw.local_hour[rows], minlength=24) / rows.sum()
        local.plot(range(24), share, ".-", label=name)
    local.set(title="Requests by local hour", xlabel="local hour", ylabel="share of the zone's")
    local.legend(fontsize=7)
    hours = np.arange(7 * 24 * 4) / 4
    totals = world.timeline.intensity((world.start_ts + hours * 3600) * 1000)
    utc.plot(hours / 24, totals)
    utc.set(title="Global traffic over a week (UTC)", xlabel="days from start", ylabel="intensity")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_base_rates(world: World, path: Path, n: int = 2000) -> None:
    """Campaign base rates (log-uniform) and the spread of P(sale) over eligible pairs."""
    plt = _pyplot()
    rng = np.random.default_rng(1)
    slots = world.audience.slots(world.draw_spread(rng, n))
    proba, eligible = sigmoid(world.truth.logits(slots)), world.eligible_slots(slots)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    base = np.log10(world.truth.spec.base_rate)
    left.hist(base, bins=40)
    left.set(title=f"Base rates of {len(base)} campaigns", xlabel="log10 base rate")
    right.hist(np.log10(proba[eligible]), bins=80, log=True)
    right.set(title="True P(sale) of eligible (request, campaign) pairs", xlabel="log10 P(sale)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_delays(world: World, path: Path) -> None:
    """Sale delay CDF on a log time axis, with the configured knots."""
    plt = _pyplot()
    delays = world.delays.sample(np.random.default_rng(2), 200_000)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(np.sort(delays) / 3600, np.linspace(0, 1, len(delays)), label="sampled")
    knots = world.config.delays
    ax.plot(np.array(knots.seconds) / 3600, knots.cdf, "ko", label="configured knots")
    ax.set_xscale("log")
    ax.set(title="Sale delay after the click", xlabel="hours (log)", ylabel="P(delay <= x)")
    for x, label in ((1, "1 h"), (24, "1 day"), (24 * 30, "30 days")):
        ax.axvline(x, color="grey", lw=0.5)
        ax.text(x, 0.02, label, fontsize=8)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs/img")
    out.mkdir(parents=True, exist_ok=True)
    world = World.generate(n_campaigns=5000, seed=0)
    plot_diurnal(world, out / "sim-diurnal.png")
    plot_base_rates(world, out / "sim-base-rates.png")
    plot_delays(world, out / "sim-delays.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
