"""ModelBank benchmark: per-request latency of four ways to score every campaign.

(a) looping sklearn ``predict_proba`` over the campaign models (the original system),
(b) the generic worker-pool path (every model in worker processes, no compilation),
(c) one ONNX Runtime session per model, converted with skl2onnx,
(d) the compiled ModelBank,

at 500, 5,000 and 50,000 campaigns, plus batch throughput and bank memory, and a
log-log plot of latency against the number of campaigns. Ratios are against (a)
measured in the same run. Where a path would take hours at 50,000 campaigns (a,
b, c) its per-model cost measured at 5,000 is extrapolated linearly and marked so.

    .venv/bin/python benchmarks/bench_modelbank.py [--sizes 500 5000 50000] [--out bench-out]
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from clickrouter import ModelBank
from clickrouter.profile import extract_profile, profile_frame
from clickrouter.serving import kernel
from support import make_sample_directory, random_profiles


def timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Wall seconds of each call."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def sample_directory(out: Path, n: int) -> Path:
    path = out / f"models-{n}"
    if not (path / "campaigns.json").exists():
        started = time.perf_counter()
        make_sample_directory(path, n, seed=n)
        print(f"  built {n} campaign models in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def bench_bank(path: Path, profiles: list[dict[str, Any]], cache: Path) -> dict[str, Any]:
    started = time.perf_counter()
    bank = ModelBank.from_directory(path, cache_dir=cache)  # cold: load, compile, fill cache
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    ModelBank.from_directory(path, cache_dir=cache)
    mmap_load_s = time.perf_counter() - started
    canonical = bank.canonical(profiles)
    slots = [bank.space.indices(p) for p in canonical]
    out = np.empty(len(bank.offers))  # one column per offer
    table = bank.assembly_.table
    it = iter(range(10**9))
    n = len(profiles)
    kernel_t = timed(lambda: kernel.probabilities_one(table, slots[next(it) % n], out), 3000)
    raw_t = timed(lambda: bank.predict_proba([profiles[next(it) % n]]), 2000)
    canon_t = timed(lambda: bank.predict_proba([canonical[next(it) % n]]), 2000)
    decide_t = timed(lambda: bank.decide(canonical[next(it) % n]), 2000)
    batch = profiles[:1000]
    batch_t = timed(lambda: bank.predict_proba(batch), 5)
    return {
        "campaigns": len(bank.campaigns),
        "slots": bank.space.n_slots,
        "load_s": load_s,
        "mmap_load_s": mmap_load_s,
        "kernel_us": statistics.median(kernel_t) * 1e6,
        "predict_one_canonical_us": statistics.median(canon_t) * 1e6,
        "predict_one_raw_us": statistics.median(raw_t) * 1e6,
        "decide_us": statistics.median(decide_t) * 1e6,
        "batch_requests_per_s": len(batch) / statistics.median(batch_t),
        "memory_mb": bank.memory_bytes / 1e6,
    }


def bench_sklearn_loop(
    path: Path, profiles: list[dict[str, Any]], repeats: int
) -> dict[str, float]:
    catalog = json.loads((path / "campaigns.json").read_text())
    models = [joblib.load(path / f"{c['id']}.joblib") for c in catalog]
    frames = [profile_frame([p]) for p in [extract_profile(p) for p in profiles[:repeats]]]

    def one(frame: Any) -> None:
        for model in models:
            model.predict_proba(frame)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        times = [timed(lambda f=f: one(f), 1)[0] for f in frames]
    return {
        "request_s": statistics.median(times),
        "per_model_us": statistics.median(times) / len(models) * 1e6,
    }


def bench_bare_lr_loop(
    path: Path, profiles: list[dict[str, Any]], repeats: int
) -> dict[str, float]:
    """The most generous baseline: each campaign's LogisticRegression alone, on
    features its pipeline encoded beforehand (encoding not timed)."""
    catalog = json.loads((path / "campaigns.json").read_text())
    pipelines = [joblib.load(path / f"{c['id']}.joblib") for c in catalog]
    canonical = [extract_profile(p) for p in profiles[:repeats]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoded = [
            [(m[-1], m[:-1].transform(profile_frame([p]))) for m in pipelines] for p in canonical
        ]
        times = [timed(lambda e=e: [lr.predict_proba(x) for lr, x in e], 1)[0] for e in encoded]
    request_s = statistics.median(times)
    return {"request_s": request_s, "per_model_us": request_s / len(pipelines) * 1e6}


def bench_pool(path: Path, profiles: list[dict[str, Any]], repeats: int) -> dict[str, float]:
    with ModelBank.from_directory(path, compile=False, workers=2) as bank:
        bank.predict_proba(profiles[:1])  # warm
        it = iter(range(10**9))
        times = timed(lambda: bank.predict_proba([profiles[next(it) % len(profiles)]]), repeats)
        n = len(bank.campaigns)
    return {
        "request_s": statistics.median(times),
        "per_model_us": statistics.median(times) / n * 1e6,
    }


def onnx_sessions(path: Path, template: Any, n_models: int) -> list[Any]:
    """One ORT session per campaign: the template converted once, coefficients patched."""
    import onnxruntime as ort
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import Int64TensorType, StringTensorType

    inputs = [
        (c, StringTensorType([None, 1])) for c in ("country", "device", "os", "browser", "provider")
    ]
    inputs += [(c, Int64TensorType([None, 1])) for c in ("local_hour", "local_weekday")]
    catalog = json.loads((path / "campaigns.json").read_text())
    proto = convert_sklearn(
        template, initial_types=inputs, options={id(template): {"zipmap": False}}
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = []
    # sample directories alternate two templates; every session uses template 0's
    # structure (OneHotEncoder + StandardScaler + LogisticRegression) with the
    # coefficients of the nearest template-0 campaign
    for i in range(n_models):
        model = joblib.load(path / f"{catalog[i - i % 2]['id']}.joblib")
        patched = copy.deepcopy(proto)
        _patch_linear(patched, model.steps[-1][1])
        sessions.append(ort.InferenceSession(patched.SerializeToString(), options))
    return sessions


def _patch_linear(proto: Any, final: Any) -> None:
    for node in proto.graph.node:
        if node.op_type == "LinearClassifier":
            for attr in node.attribute:
                coef, intercept = final.coef_.ravel(), final.intercept_.ravel()
                if attr.name == "coefficients":
                    attr.floats[:] = np.concatenate([-coef, coef]).tolist()
                elif attr.name == "intercepts":
                    attr.floats[:] = np.concatenate([-intercept, intercept]).tolist()
            return
    raise RuntimeError("no LinearClassifier node in the converted model")


def bench_onnx(
    path: Path, profiles: list[dict[str, Any]], n_models: int, repeats: int
) -> dict[str, float]:
    template = joblib.load(path / "c00000.joblib")
    sessions = onnx_sessions(path, template, n_models)
    canonical = [extract_profile(p) for p in profiles[:repeats]]
    feeds = [
        {k: np.array([[v]], dtype=object if isinstance(v, str) else np.int64) for k, v in p.items()}
        for p in canonical
    ]
    _check_onnx_agrees(path, sessions, feeds[0], canonical[0])

    def one(feed: dict[str, np.ndarray]) -> None:
        for session in sessions:
            session.run(None, feed)

    times = [timed(lambda f=f: one(f), 1)[0] for f in feeds]
    per_model = statistics.median(times) / len(sessions)
    return {"per_model_us": per_model * 1e6, "models_measured": len(sessions)}


def _check_onnx_agrees(
    path: Path, sessions: list[Any], feed: dict[str, Any], profile: dict[str, Any]
) -> None:
    catalog = json.loads((path / "campaigns.json").read_text())
    frame = profile_frame([profile])
    for session, entry in list(zip(sessions, catalog, strict=False))[:20:2]:
        expected = joblib.load(path / f"{entry['id']}.joblib").predict_proba(frame)[0, 1]
        got = float(np.asarray(session.run(None, feed)[1])[0, 1])
        if abs(got - expected) > 1e-4 + 1e-3 * expected:
            raise RuntimeError(
                f"ONNX disagrees with sklearn for {entry['id']}: {got} vs {expected}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000, 50000])
    parser.add_argument("--out", type=Path, default=Path("bench-out/modelbank"))
    parser.add_argument("--plot", type=Path, default=Path("docs/img/modelbank-latency.png"))
    parser.add_argument(
        "--reuse-baselines",
        type=Path,
        default=None,
        help="results.json of an earlier run: re-measure only the ModelBank, keep its baselines",
    )
    args = parser.parse_args()
    earlier = json.loads(args.reuse_baselines.read_text()) if args.reuse_baselines else {}
    args.out.mkdir(parents=True, exist_ok=True)
    profiles = random_profiles(np.random.default_rng(123), 5000)
    for i, p in enumerate(profiles[::3]):  # a third raw: local time from ts and country
        del p["local_hour"], p["local_weekday"]
        p["ts"] = 1_780_000_000 + 3607 * i
    results: dict[int, dict[str, Any]] = {}
    slow_reference: dict[str, float] = {}
    for n in args.sizes:
        print(f"== {n} campaigns", flush=True)
        path = sample_directory(args.out, n)
        row: dict[str, Any] = {"bank": bench_bank(path, profiles, args.out / "cache")}
        print(f"  bank: {row['bank']}", flush=True)
        gc.collect()
        if str(n) in earlier and not earlier[str(n)].get("extrapolated"):
            row.update({k: earlier[str(n)][k] for k in ("sklearn", "bare_lr", "pool", "onnx")})
            slow_reference = {
                k: row[k]["per_model_us"] for k in ("sklearn", "bare_lr", "pool", "onnx")
            }
        elif n <= 5000:
            row["sklearn"] = bench_sklearn_loop(path, profiles, repeats=5 if n <= 500 else 2)
            row["bare_lr"] = bench_bare_lr_loop(path, profiles, repeats=5 if n <= 500 else 2)
            row["pool"] = bench_pool(path, profiles, repeats=5 if n <= 500 else 2)
            row["onnx"] = bench_onnx(path, profiles, n_models=n, repeats=5 if n <= 500 else 3)
            slow_reference = {
                k: row[k]["per_model_us"] for k in ("sklearn", "bare_lr", "pool", "onnx")
            }
        else:
            if not slow_reference:
                raise SystemExit("measure a size <= 5000 first: 50,000 extrapolates from it")
            row["extrapolated"] = True
        for key in ("sklearn", "bare_lr", "pool", "onnx"):
            per_model = row[key]["per_model_us"] if key in row else slow_reference[key]
            row.setdefault(key, {})["request_ms"] = per_model * n / 1e3
        row["ratio_sklearn_over_bank"] = (
            row["sklearn"]["request_ms"] * 1e3 / row["bank"]["predict_one_canonical_us"]
        )
        row["ratio_bare_lr_over_bank"] = (
            row["bare_lr"]["request_ms"] * 1e3 / row["bank"]["predict_one_canonical_us"]
        )
        row["ratio_onnx_over_bank"] = (
            row["onnx"]["request_ms"] * 1e3 / row["bank"]["predict_one_canonical_us"]
        )
        print(
            f"  {json.dumps({k: v for k, v in row.items() if k != 'bank'}, default=float)}",
            flush=True,
        )
        results[n] = row
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    plot(results, args.plot)
    print_table(results)
    return 0


def plot(results: dict[int, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(results)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = [
        ("sklearn", "loop sklearn pipeline predict_proba", "tab:red"),
        ("bare_lr", "loop LogisticRegression.predict_proba (pre-encoded)", "tab:brown"),
        ("pool", "generic worker pool (2 procs)", "tab:orange"),
        ("onnx", "ONNX Runtime, session per model", "tab:purple"),
    ]
    for key, label, color in series:
        ms = [results[n][key]["request_ms"] for n in sizes]
        measured = [n for n in sizes if not results[n].get("extrapolated")]
        ax.plot(sizes, ms, "--", color=color, alpha=0.5)
        ax.plot(
            measured,
            [results[n][key]["request_ms"] for n in measured],
            "o-",
            color=color,
            label=label,
        )
    ax.plot(
        sizes,
        [results[n]["bank"]["predict_one_canonical_us"] / 1e3 for n in sizes],
        "o-",
        color="tab:green",
        label="ModelBank (compiled)",
    )
    ax.axhline(200, color="grey", lw=0.8, ls=":")
    ax.text(sizes[0], 230, "200 ms deadline", color="grey", fontsize=8)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="campaigns scored per request",
        ylabel="latency per request (ms)",
    )
    ax.set_title("Scoring every campaign for one request (dashed: extrapolated)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def print_table(results: dict[int, dict[str, Any]]) -> None:
    header = ["campaigns", "loop pipelines", "loop bare LR", "worker pool", "ONNX per model"]
    header += ["ModelBank", "x vs pipelines", "x vs bare LR", "x vs ONNX", "bank MB"]
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---:|" * len(header))
    for n, row in sorted(results.items()):
        mark = " (extrapolated)" if row.get("extrapolated") else ""
        cells = [
            f"{n:,}",
            f"{row['sklearn']['request_ms']:,.1f} ms{mark}",
            f"{row['bare_lr']['request_ms']:,.1f} ms{mark}",
            f"{row['pool']['request_ms']:,.1f} ms{mark}",
            f"{row['onnx']['request_ms']:,.2f} ms{mark}",
            f"{row['bank']['predict_one_canonical_us']:.1f} us",
            f"{row['ratio_sklearn_over_bank']:,.0f}",
            f"{row['ratio_bare_lr_over_bank']:,.0f}",
            f"{row['ratio_onnx_over_bank']:,.0f}",
            f"{row['bank']['memory_mb']:.1f}",
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
