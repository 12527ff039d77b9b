"""Speed of the Section 7 kernel against peers measured in the same run: other checkouts of fbsgd.

Each root (this repository first, then every ``--peer``, e.g. a clone of an older commit) runs in its own
child process, with its own numba kernel folder (``FBSGD_KERNEL_DIR``, kept under the system's temporary
folder, so a second run reuses the machine code), and the roots take turns, ``--repeats`` rounds; each
workload's time is the best of its rounds, in CPU seconds of the child (``time.process_time``: a run is
not charged for the time others' processes hold the cores, which on the shared 2-core machine made
wall times swing by 15 %), per configuration and iteration (µs).

Workloads (every root that can run them):

* ``tile``: the three of the tile path (``block_kernel``): Section 7 float32 forward noise per sample,
  float64 clean, the budgets' shared float64 backward noise; 8 configurations, T = ``--T``;
* ``memory``: the correctors chapter's 24 settings (Top-K, Rand-K and float8 rounding at either place,
  plain, with error feedback, delta-based, stochastic rounding; the de-biasing settings; the baseline),
  12 configurations each (4 step sizes × 3 seeds), T = ``--T-memory``: the SITE places run on the
  whole-message path (``memory_kernel``).

And, in this repository only, a check of bits: a SITE place that is the identity (Top-K keeping the one
entry of each one-entry row) at either place, or acting every third step, gives the clean run of the tile
path bit for bit (``identity_site_bits=True``).

Run:  .venv/bin/python benchmarks/section7_regression.py --peer /tmp/old27 [--parts tile,memory] [--repeats 2]
The last line is machine-readable: ``<workload>=<this µs>/<peer µs>`` ratios for the first peer.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tile_workloads(RunConfig, T):
    return {
        "s7 forward f32 per_sample": [RunConfig(T=T, gamma=g, seed=s, perturbation="forward", sigma_f=2.0,
                                                precision="float32") for g in (0.01, 0.1) for s in range(4)],
        "s7 clean f64 per_sample": [RunConfig(T=T, gamma=g, seed=s) for g in (0.01, 0.1) for s in range(4)],
        "budget shared f64 backward": [RunConfig(T=T, gamma=g, seed=s, perturbation="backward", sigma_b=2.0,
                                                 mode="shared") for g in (0.01, 0.1) for s in range(4)],
    }


def _memory_workloads(T):
    from fbsgd.studies.correctors import study as R  # deferred: a peer checkout may not have the chapter

    prob = R.problem()
    settings = R.compression_settings(200, "float8_e4m3fn") + R.debias_settings([2.0], prob.d) + [R.baseline_setting()]
    return {f"{s['place']} {s['perturbation']} {s['corrector']}":
            [R.run_config(s, g, k, T) for g in (0.003, 0.01, 0.03, 0.1) for k in (0, 1, 2)] for s in settings}


def child(root: str, parts: list[str], T: int, T_memory: int) -> None:
    """Runs in the child process: times every workload of ``parts`` once (after a short warm-up run that
    compiles its kernel) and prints one JSON line {workload: µs per configuration-iteration}."""
    sys.path.insert(0, root)
    try:
        from fbsgd.engine.sweeps import RunConfig, run_sweep  # deferred: the root chosen at run time
    except ImportError:
        from fbsgd.sweeps import RunConfig, run_sweep  # deferred: an older layout of the package
    out = {}
    workloads = {}
    if "tile" in parts:
        workloads.update(_tile_workloads(RunConfig, T))
    if "memory" in parts:
        try:
            workloads.update(_memory_workloads(T_memory))
        except ImportError:
            pass
    for name, configs in workloads.items():
        run_sweep(configs[:1], n_jobs=1, cache_dir=False, progress=False)  # compiles (or loads) the kernel
        t = time.process_time()
        run_sweep(configs, n_jobs=1, cache_dir=False, progress=False)
        out[name] = (time.process_time() - t) / len(configs) / configs[0].T * 1e6
    print("RESULT " + json.dumps(out), flush=True)


def identity_site_bits() -> bool:
    """This repository: a SITE place that is the identity gives the tile path's clean run, bit for bit."""
    import numpy as np  # deferred: the parent process imports no fbsgd until the timings are done

    from fbsgd import perturbations as P  # deferred: as above
    from fbsgd.engine import lockstep as E  # deferred: as above
    from fbsgd.engine.sweeps import RunConfig  # deferred: as above

    same = True
    for precision in ("float32", "float64"):
        runs = []
        for fields in ({}, dict(forward=P.TopK(1)), dict(backward=P.TopK(1)), dict(forward=P.every(3, P.TopK(1)))):
            cfg = RunConfig(T=40, metric_every=1, gamma=0.1, seed=3, precision=precision, **fields)
            row = dict(cfg.kernel_row(), xi_key=12345)  # one stream of sampling noise for all four
            AT64 = np.ascontiguousarray(cfg.problem().signed_features.T)
            W = np.zeros((1, cfg.d))
            norms = np.full((1, 40), np.nan)
            E.kernel(cfg.d, precision)(AT64.astype(precision), AT64, W, 0, 40, 1, E.kernel_params([row]), norms,
                                       np.zeros(0, np.int64), np.zeros((1, 0)), np.full(1, -1, np.int64))
            runs.append(W.tobytes() + norms.tobytes())
        same &= all(r == runs[0] for r in runs[1:])
    return same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer", action="append", default=[], help="another checkout's root (repeatable)")
    ap.add_argument("--parts", default="tile,memory")
    ap.add_argument("--T", type=int, default=20000)
    ap.add_argument("--T-memory", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    parts = [p for p in a.parts.split(",") if p]
    if bad := set(parts) - {"tile", "memory"}:
        raise SystemExit(f"--parts takes tile and memory, got {sorted(bad)}")
    if a.child is not None:
        child(a.child, parts, a.T, a.T_memory)
        return
    roots = [str(ROOT)] + [str(Path(p).resolve()) for p in a.peer]
    for r in roots[1:]:
        if not (Path(r) / "fbsgd" / "__init__.py").is_file():
            raise SystemExit(f"--peer must be the root of a checkout of fbsgd (with fbsgd/__init__.py), got {r}")
    best: dict[str, dict[str, float]] = {r: {} for r in roots}
    for _ in range(a.repeats):
        for r in roots:  # the roots take turns, so each round's load falls on all of them
            kdir = Path(tempfile.gettempdir()) / f"fbsgd-s7bench-{hashlib.sha1(r.encode()).hexdigest()[:10]}"
            env = dict(os.environ, FBSGD_KERNEL_DIR=str(kdir), PYTHONPATH=r)
            proc = subprocess.run([sys.executable, __file__, "--child", r, "--parts", a.parts, "--T", str(a.T),
                                   "--T-memory", str(a.T_memory)], env=env, capture_output=True, text=True, cwd=r)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                raise SystemExit(f"the run in {r} failed:\n{proc.stderr[-3000:]}")
            for k, v in json.loads(line[-1][7:]).items():
                best[r][k] = min(v, best[r].get(k, float("inf")))
    names = list(best[roots[0]])
    head = f"{'µs per configuration-iteration (CPU time)':48s}" + "".join(f"{Path(r).name[:12]:>13s}" for r in roots)
    print(head + ("   ratio this/peer" if len(roots) > 1 else ""))
    ratios = []
    for n in names:
        vals = [best[r].get(n) for r in roots]
        row = f"{n:48s}" + "".join(f"{v:13.2f}" if v is not None else f"{'—':>13s}" for v in vals)
        if len(roots) > 1 and vals[1]:
            row += f"   {vals[0] / vals[1]:.2f}"
            ratios.append(f"{n.replace(' ', '_')}={vals[0] / vals[1]:.3f}")
        print(row)
    print(f"identity_site_bits={identity_site_bits()}")
    print(" ".join(ratios))


if __name__ == "__main__":
    main()
