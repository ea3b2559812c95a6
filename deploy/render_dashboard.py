"""Render deploy/grafana/clickrouter-dashboard.json from a real Prometheus, without Grafana.

Runs the whole loop on loopback for a few minutes: a simulated world, a
cold-start model store, the predictor (``clickrouter serve``), simulated
traffic with signed postbacks (``clickrouter simulate --target``), the
consumer and the trainer in ``--watch`` mode with ``--metrics-port``, and a
Prometheus scraping the three with ``deploy/prometheus/alerts.yml``. It then
asks Prometheus (``/api/v1/query_range``) for every query of every panel of the
dashboard and draws the panels with matplotlib at their places in the
dashboard's grid. The picture is the dashboard's queries over real data; the
look is matplotlib's, not Grafana's.

    .venv/bin/python deploy/render_dashboard.py --out docs/img/dashboard.png

Needs ``prometheus`` on PATH (``make services`` installs Debian's).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "clickrouter-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
GRID_COLUMNS = 24
STEP_SECONDS = 5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "dashboard.png")
    parser.add_argument(
        "--seconds", type=float, default=240.0, help="how long traffic runs before the render"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary dir")
    args = parser.parse_args(argv)
    if shutil.which("prometheus") is None:
        parser.error("prometheus is not on PATH (make services installs it)")
    with ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        prometheus, started = run_pipeline(stack, workdir, args.seconds)
        panels = json.loads(DASHBOARD.read_text("utf-8"))["panels"]
        series = {
            id(panel): [query_range(prometheus, t["expr"], started) for t in targets(panel)]
            for panel in panels
        }
    draw(panels, series, args.out)
    print(f"wrote {args.out}")
    return 0


def targets(panel: dict[str, Any]) -> list[dict[str, Any]]:
    return list(panel.get("targets", []))


# -- the pipeline ---------------------------------------------------------------


def run_pipeline(stack: ExitStack, work: Path, seconds: float) -> tuple[str, float]:
    """Start every stage and Prometheus, run traffic for ``seconds``; Prometheus's URL and
    when the traffic started."""
    env = {
        **os.environ,
        "CLICKROUTER_POSTBACK_SECRET": secrets.token_hex(16),
        "CLICKROUTER_CLICK_SECRET": secrets.token_hex(16),
        "CLICKROUTER_RELOAD_POLL_SECONDS": "1",
    }
    world, store, events, data = work / "world", work / "store", work / "events", work / "data"
    catalog = world / "campaigns.json"
    clickrouter(env, "simulate", "--campaigns", "40", "--seed", "3", "--out", str(world),
                "--clicks", "20000")  # fmt: skip
    clickrouter(env, "train", "--store", str(store), "--catalog", str(catalog), "--cold-start",
                "--quiet")  # fmt: skip
    ports = {name: free_port() for name in ("predictor", "consumer", "trainer", "prometheus")}
    port = str(ports["predictor"])
    stack.enter_context(
        background(
            env,
            work / "serve.log",
            "serve",
            "--models",
            str(store),
            "--events",
            str(events),
            "--port",
            port,
        )
    )
    predictor = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(predictor + "/v2/health/ready").status_code == 200, 120)
    # the world's own log first: the consumer and the trainer start with history
    shutil.copytree(world / "events", events, dirs_exist_ok=True)
    stack.enter_context(
        background(
            env,
            work / "consume.log",
            "consume",
            "--source",
            str(events),
            "--data",
            str(data),
            "--metrics-port",
            str(ports["consumer"]),
            "--quiet",
            "--commit-seconds",
            "1",
            "--lateness-seconds",
            "60",
        )
    )
    stack.enter_context(
        background(
            env,
            work / "train.log",
            "train",
            "--watch",
            "--every",
            "45s",
            "--data",
            str(data),
            "--store",
            str(store),
            "--catalog",
            str(catalog),
            "--workers",
            "0",
            "--quiet",
            "--metrics-port",
            str(ports["trainer"]),
        )
    )
    prometheus = stack.enter_context(start_prometheus(work, ports))
    wait_until(lambda: len(instant(prometheus, "up == 1")) == 3, 120)
    started = time.time()
    stack.enter_context(
        background(
            env,
            work / "traffic.log",
            "simulate",
            "--world",
            str(world),
            "--target",
            predictor,
            "--requests",
            str(int(seconds * 40)),
            "--rate",
            "40",
        )
    )
    refuse_some_postbacks(predictor)
    (events / "intruder.00000001.jsonl").write_bytes(b"not an event\n")  # one dead letter
    time.sleep(seconds)
    return prometheus, started


def clickrouter(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "clickrouter.cli", *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


@contextmanager
def background(env: dict[str, str], log: Path, *args: str) -> Iterator[None]:
    """``clickrouter args`` running until the block ends (SIGTERM, then SIGKILL)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "clickrouter.cli", *args], env=env, stdout=out, stderr=out
        )
    try:
        yield
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def start_prometheus(work: Path, ports: dict[str, int]) -> Iterator[str]:
    jobs = {name: ports[name] for name in ("predictor", "consumer", "trainer")}
    scrapes = "".join(
        f"  - job_name: clickrouter-{job}\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        for job, port in jobs.items()
    )
    config = work / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 2s, evaluation_interval: 2s}\n"
        f"rule_files: ['{ALERTS}']\nscrape_configs:\n{scrapes}",
        encoding="utf-8",
    )
    address = f"127.0.0.1:{ports['prometheus']}"
    with (work / "prometheus.log").open("wb") as out:
        process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address={address}",
            ],
            stdout=out,
            stderr=out,
        )
    try:
        yield f"http://{address}"
    finally:
        stop(process)


def refuse_some_postbacks(predictor: str) -> None:
    """A few forged postbacks: the refusals panel shows their reasons."""
    for params in ({"click_id": "forged", "revenue": "1"}, {"token": "wrong-secret-0123456789"}):
        for _ in range(5):
            httpx.get(predictor + "/v1/postback", params=params)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"timed out after {timeout:g} s waiting for {condition}")


# -- Prometheus -----------------------------------------------------------------


def instant(prometheus: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(prometheus + "/api/v1/query", params={"query": expr}, timeout=30).json()
    return list(answer["data"]["result"])


def query_range(prometheus: str, expr: str, start: float) -> list[dict[str, Any]]:
    """Every series of ``expr`` from ``start`` to now: ``[{"metric": {...}, "values": [...]}]``."""
    params: dict[str, str | float] = {
        "query": expr,
        "start": start,
        "end": time.time(),
        "step": STEP_SECONDS,
    }
    answer = httpx.get(prometheus + "/api/v1/query_range", params=params, timeout=60).json()
    if answer.get("status") != "success":
        raise SystemExit(f"query {expr!r} failed: {answer}")
    return list(answer["data"]["result"])


# -- drawing --------------------------------------------------------------------

BACKGROUND, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"


def draw(panels: list[dict[str, Any]], series: dict[int, list[Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    unit = 0.42  # inches per grid row
    figure = plt.figure(figsize=(GRID_COLUMNS * 0.9, rows * unit + 0.8), facecolor=BACKGROUND)
    figure.suptitle(
        "clickrouter dashboard: deploy/grafana/clickrouter-dashboard.json queries, "
        "rendered with matplotlib from a real Prometheus (not Grafana)",
        color=TEXT,
        fontsize=13,
        y=0.998,
    )
    height = rows * unit + 0.8
    for panel in panels:
        pos = panel["gridPos"]
        left = pos["x"] / GRID_COLUMNS + 0.004
        width = pos["w"] / GRID_COLUMNS - 0.008
        top = 1 - (0.5 + pos["y"] * unit) / height
        span = pos["h"] * unit / height
        if panel["type"] == "row":
            draw_row(figure.add_axes((left, top - span, width, span)), panel)
            continue
        # room below for the tick labels, above for the title
        axes = figure.add_axes((left, top - span + 0.35 / height, width, span - 0.6 / height))
        axes.set_facecolor(PANEL)
        axes.set_title(panel.get("title", ""), color=TEXT, fontsize=10, loc="left")
        results = series.get(id(panel), [])
        unit_name = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        if panel["type"] == "stat":
            draw_stat(axes, panel, results, unit_name)
        elif panel["type"] == "table":
            draw_table(axes, results)
        else:
            draw_timeseries(axes, panel, results, unit_name)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=70, facecolor=BACKGROUND)


def draw_row(axes: Any, panel: dict[str, Any]) -> None:
    axes.set_axis_off()
    axes.text(0, 0.2, panel.get("title", ""), color=TEXT, fontsize=13, fontweight="bold")


def _plain(axes: Any) -> None:
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_color(GRID)


def draw_stat(axes: Any, panel: dict[str, Any], results: list[Any], unit: str) -> None:
    _plain(axes)
    values = [
        (legend(panel, i, s["metric"]), float(s["values"][-1][1]))
        for i, query in enumerate(results)
        for s in query
        if s["values"]
    ]
    for n, (name, value) in enumerate(values[:6]):
        y = 1 - (n + 1) / (len(values[:6]) + 1)
        axes.text(0.5, y, shown(value, unit), ha="center", va="center", color="#73bf69",
                  fontsize=22 if len(values) == 1 else 14, fontweight="bold")  # fmt: skip
        if len(values) > 1:
            axes.text(0.5, y - 0.07, name, ha="center", va="center", color=TEXT, fontsize=8)
    if not values:
        axes.text(0.5, 0.5, "no data", ha="center", color=TEXT)


def draw_table(axes: Any, results: list[Any]) -> None:
    _plain(axes)
    rows = [s["metric"] for query in results for s in query]
    if not rows:
        axes.text(0.5, 0.5, "no data", ha="center", color=TEXT)
        return
    columns = sorted({k for row in rows for k in row if k != "__name__"})
    cells = [[str(row.get(c, "")) for c in columns] for row in rows[:8]]
    table = axes.table(cellText=cells, colLabels=columns, loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for cell in table.get_celld().values():
        cell.set_facecolor(PANEL)
        cell.set_edgecolor(GRID)
        cell.get_text().set_color(TEXT)


def draw_timeseries(axes: Any, panel: dict[str, Any], results: list[Any], unit: str) -> None:
    axes.tick_params(colors=TEXT, labelsize=7)
    axes.grid(color=GRID, linewidth=0.5)
    for spine in axes.spines.values():
        spine.set_color(GRID)
    start = min((float(s["values"][0][0]) for q in results for s in q if s["values"]), default=0)
    lines = 0
    for i, query in enumerate(results):
        for s in query:
            times = [(float(t) - start) / 60 for t, _ in s["values"]]
            values = [_number(v) for _, v in s["values"]]
            axes.plot(times, values, linewidth=1.3, label=legend(panel, i, s["metric"]))
            lines += 1
    if lines == 0:
        axes.text(0.5, 0.5, "no data", ha="center", color=TEXT, transform=axes.transAxes)
        return
    axes.set_xlabel("minutes", color=TEXT, fontsize=7)
    if unit in ("s", "reqps"):
        axes.set_ylabel({"s": "seconds", "reqps": "per second"}[unit], color=TEXT, fontsize=7)
    if lines <= 8:
        axes.legend(fontsize=6, facecolor=PANEL, edgecolor=GRID, labelcolor=TEXT, loc="best")


def legend(panel: dict[str, Any], index: int, metric: dict[str, str]) -> str:
    """The target's legendFormat with ``{{label}}`` filled in, else the labels."""
    fmt = panel.get("targets", [])[index].get("legendFormat") or ""
    if fmt and fmt != "__auto":
        for key, value in metric.items():
            fmt = fmt.replace("{{" + key + "}}", value)
        return fmt
    labels = {k: v for k, v in metric.items() if k != "__name__"}
    return ", ".join(f"{k}={v}" for k, v in labels.items()) or f"query {index + 1}"


def _number(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else float("nan")


def shown(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.0f} s" if value >= 10 else f"{value:.2f} s"
    return f"{value:g}"


if __name__ == "__main__":
    raise SystemExit(main())
