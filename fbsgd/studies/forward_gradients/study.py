"""The measurements of the forward-gradient chapter, as tidy tables.

Each study runs one estimator question end to end and returns a pandas table
with the configuration as columns:

* :func:`beale_study` — error of an average of K forward gradients on the
  Beale function against the closed form √((n+1)/K)·‖∇f‖ and the bias check
  (:func:`monte_carlo_errors`), plus the arrows of Gao et al.'s Figure 1
  (:func:`arrow_averages`);
* :func:`variance_study` — E‖ḡ_K − ∇ℓ‖²/‖∇ℓ‖² against (n+1)/K for several n
  (:func:`variance_ratio`);
* :func:`stability_study` — the one-step factor of E‖w‖² of SGD with forward
  gradients on ½‖w‖² against 1 − 2γ + γ²(n+2) (:func:`one_step_ratios`);
* :func:`training_grid` — SGD or Adam with backprop and with forward gradients on
  several models, one table of curves and one of runs (:func:`estimator_grid`);
  :func:`summarize_runs` condenses it per (model, lr, estimator) with the
  slowdown (:func:`slowdown`);
* :func:`noise_floors` — the stationary excess loss of constant-step SGD against
  the linearized prediction (:func:`linearized_floor`);
* :func:`adam_scales` — the per-model numbers the Adam mechanism is judged by.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fbsgd import rng
from fbsgd.studies.forward_gradients.problems import beale_problem, mlp_classifier, quadratic_net, teacher_classification
from fbsgd.studies.forward_gradients.estimators import ForwardGradient, directional_derivatives, forward_gradients, gaussian_directions, \
    second_moment_factor
from fbsgd.optimizers import SGD, Adam, PassGradient, train
from fbsgd.passes import Composite, passes
from fbsgd.problems import LogisticRegression
from fbsgd.engine.workers import costliest_first

__all__ = ["PROBE_STEPS", "probe_window", "monte_carlo_errors", "variance_ratio", "StepProbe", "linearized_floor", "estimator_grid", "slowdown",
           "one_step_ratios", "beale_study", "arrow_averages", "variance_study", "stability_study", "training_grid",
           "summarize_runs", "estimator_ratios", "noise_floors", "adam_scales", "ADAM_BETA1"]

ADAM_BETA1 = Adam(1.0).beta1  # β₁ of the Adam runs (the default of :class:`fbsgd.optimizers.Adam`)


def monte_carlo_errors(net: Composite, x, w, Ks, repeats: int, seed: int = 0, chunk: int = 2_000_000) -> pd.DataFrame:
    """For each K: ``repeats`` independent means of K forward gradients at w,
    compared with the exact gradient u of the backward pass.

    Each row has K, the mean squared error E‖ḡ_K − u‖² with its standard
    error, the closed form (n+1)‖u‖²/K, and the error of the grand mean of
    all repeats·K draws (bias check) with its expected size."""
    w = np.asarray(w, dtype=float)
    n = net.weight_size
    u = passes(net, np.atleast_2d(x), w).gradient()
    J = directional_derivatives(net, x, w, np.eye(n), method="basis")  # forward mode only
    rows = []
    for K in Ks:
        key = rng.derive_key("fbsgd.forward_gradients.monte_carlo", int(seed), int(K))
        per = max(1, chunk // (K * n))
        sq, total, done, step = [], np.zeros(n), 0, 0
        while done < repeats:
            r = min(per, repeats - done)
            V = rng.normal(key, step, (r, K, n))
            G = (V @ J)[:, :, None] * V  # (r, K, n): the forward gradients
            means = G.mean(axis=1)
            sq.append(np.sum((means - u) ** 2, axis=1))
            total += means.sum(axis=0)
            done += r
            step += 1
        sq = np.concatenate(sq)
        grand = total / repeats
        rows.append(dict(K=int(K), repeats=int(repeats), mse=float(sq.mean()), mse_se=float(sq.std(ddof=1) / np.sqrt(repeats)),
                         closed_form_mse=float((n + 1) * (u @ u) / K), grad_norm=float(np.linalg.norm(u)),
                         grand_mean_error=float(np.linalg.norm(grand - u)),
                         grand_mean_rms=float(np.sqrt((n + 1) * (u @ u) / (K * repeats)))))
    return pd.DataFrame(rows)


def variance_ratio(net: Composite, x, w, K: int, draws: int, seed: int = 0) -> dict:
    """E‖ḡ_K − u‖² / ‖u‖² and E‖ḡ_K‖² / ‖u‖² measured from ``draws`` means of K
    forward gradients (u the exact gradient), with standard errors and the
    closed forms (n+1)/K and 1 + (n+1)/K."""
    w = np.asarray(w, dtype=float)
    n = net.weight_size
    u = passes(net, np.atleast_2d(x), w).gradient()
    key = rng.derive_key("fbsgd.forward_gradients.variance", int(seed), int(K), int(n))
    V = rng.normal(key, 0, (draws * K, n))
    d = directional_derivatives(net, x, w, V, method="basis" if draws * K > n else "loop")
    means = (d[:, None] * V).reshape(draws, K, n).mean(axis=1)
    uu = float(u @ u)
    var = np.sum((means - u) ** 2, axis=1) / uu
    sec = np.sum(means**2, axis=1) / uu
    cf = second_moment_factor(n, K)
    return dict(n=n, K=K, draws=draws, variance=float(var.mean()), variance_se=float(var.std(ddof=1) / np.sqrt(draws)),
                closed_form_variance=cf["variance"], second_moment=float(sec.mean()),
                second_moment_se=float(sec.std(ddof=1) / np.sqrt(draws)), closed_form_second_moment=cf["second_moment"])


class StepProbe:
    """A ``callback`` for :func:`fbsgd.optimizers.train` that, every ``every``
    steps, compares the step just taken with the exact full-batch gradient u at
    the point where it was taken: it records the progress along the gradient
    ⟨u, step⟩/‖u‖, the step length ‖step‖, and their ratio (the cosine)."""

    def __init__(self, net: Composite, data, every: int = 10, regularizer_grad=None):
        self.net, self.data, self.every, self.reg = net, data, every, regularizer_grad
        self.t, self.progress, self.length = [], [], []

    def __call__(self, t, w, g, step):
        if t % self.every:
            return
        w_prev = w + step
        u = passes(self.net, self.data, w_prev).gradient()
        if self.reg is not None:
            u = u + self.reg(w_prev)
        nu = np.linalg.norm(u)
        self.t.append(t)
        self.progress.append(float(u @ step / nu) if nu > 0 else np.nan)
        self.length.append(float(np.linalg.norm(step)))

    def summary(self) -> dict:
        p, s = np.array(self.progress), np.array(self.length)
        return dict(progress=float(np.nanmean(p)), step_length=float(np.mean(s)), cosine=float(np.nanmean(p / s)))



def linearized_floor(H: np.ndarray, Sigma: np.ndarray, gamma: float, estimator: str = "backprop") -> float:
    """Stationary E[ℓ(w) − ℓ*] ≈ ½ tr(H S) of constant-step SGD on the quadratic
    model ℓ ≈ ℓ* + ½ δᵀHδ, with minibatch gradient noise of covariance Sigma.

    The second moment S = E[δδᵀ] solves the fixed point of

    * backprop:  S ← S − γ(HS + SH) + γ²(HSH + Σ);
    * forward gradient, g = v vᵀ(Hδ + ξ), v ~ N(0, I) (so E[v vᵀ A v vᵀ] = tr(A) I + 2A):
      S ← S − γ(HS + SH) + γ²[tr(HSH + Σ) I + 2HSH + 2Σ].

    For small γ both give ½tr(HS) ≈ (γ/4) × (trace of the noise covariance),
    i.e. tr Σ and (n + 2) tr Σ: the forward gradient's floor is n + 2 times
    higher.  Returns inf when the recursion is not mean-square stable."""
    H = np.asarray(H, dtype=float)
    Sigma = np.asarray(Sigma, dtype=float)
    n = H.shape[0]
    I = np.eye(n)
    # linear map on vec(S), row-major
    A = np.eye(n * n) - gamma * (np.kron(H, I) + np.kron(I, H))
    HH = np.kron(H, H)
    if estimator == "backprop":
        A = A + gamma**2 * HH
        c = gamma**2 * Sigma
    elif estimator == "forward":
        A = A + gamma**2 * (2 * HH + np.outer(I.ravel(), HH.T @ I.ravel()))
        c = gamma**2 * (np.trace(Sigma) * I + 2 * Sigma)
    else:
        raise ValueError("estimator must be 'backprop' or 'forward'")
    if np.max(np.abs(np.linalg.eigvals(A))) >= 1:
        return float("inf")
    S = np.linalg.solve(np.eye(n * n) - A, c.ravel()).reshape(n, n)
    return float(0.5 * np.trace(H @ S))



PROBE_STEPS = 200  # the Adam probe (progress per step, step length) covers the first this many iterations


def probe_window(steps: dict) -> str:
    """The iterations the probe covers, as words: "the first 200 iterations" when every model's run is
    at least PROBE_STEPS long, else per model ("the first 200 iterations of the logistic regression and
    all 120 of the perceptron")."""
    n = {m: min(PROBE_STEPS, int(s)) for m, s in steps.items()}
    if all(v == PROBE_STEPS for v in n.values()):
        return f"the first {PROBE_STEPS} iterations"
    parts = [(f"the first {v}" if v == PROBE_STEPS else f"all {v}") + f" iterations of the {m}" for m, v in n.items()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


ESTIMATORS = {"backprop": PassGradient, "forward gradient": ForwardGradient}
RECORD_POINTS = 50  # points of each training curve
PROBE_EVERY = 5  # the step probe looks at every this many iterations


def _grid_runs(net: Composite, data, w0, optimizer: str, lrs, steps: int, seeds, batch_size: int, metric,
               regularizer_grad, record_points: int, probe_steps: int, probe_every: int) -> list[dict]:
    """The runs of :func:`estimator_grid`, one dict of :func:`_train_one` arguments each, in table order."""
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    return [dict(net=net, data=data, w0=w0, optimizer=optimizer, lr=lr, estimator=name, seed=s, steps=steps,
                 batch_size=batch_size, metric=metric, regularizer_grad=regularizer_grad, record_points=record_points,
                 probe_steps=probe_steps, probe_every=probe_every)
            for lr in lrs for name in ESTIMATORS for s in seeds]


def _train_one(net, data, w0, optimizer, lr, estimator, seed, steps, batch_size, metric, regularizer_grad,
               record_points, probe_steps, probe_every) -> tuple[pd.DataFrame, dict]:
    """One run of :func:`estimator_grid`: its curve and its row."""
    make = {"sgd": SGD, "adam": Adam}[optimizer]
    metric = metric or (lambda w: float(net.value(data, w).mean()))
    probe = StepProbe(net, data, every=probe_every, regularizer_grad=regularizer_grad)
    cb = lambda t, w, g, st: probe(t, w, g, st) if t < probe_steps else None  # noqa: E731
    run = train(ESTIMATORS[estimator](net), w0, make(lr), steps, data, batch_size=batch_size, seed=seed,
                regularizer_grad=regularizer_grad, metrics={"loss": metric}, record_every=max(1, steps // record_points),
                callback=cb)
    loss = run["loss"]
    curve = pd.DataFrame(dict(estimator=estimator, lr=lr, seed=seed, t=run.t, loss=loss))
    pr = probe.summary()
    row = dict(optimizer=optimizer, estimator=estimator, lr=lr, seed=seed, initial=loss[0], final=loss[-1],
               second_half=float(np.nanmean(loss[run.t >= steps // 2])) if not run.diverged else np.nan,
               diverged=run.diverged, early_progress=pr["progress"], early_step_length=pr["step_length"])
    return curve, row


def _run_all(runs: list[dict], n_jobs: int) -> list[tuple]:
    """:func:`_train_one` for every run, in order, on ``n_jobs`` joblib workers.  Each run is a pure
    function of its arguments (its streams are keyed by its seed), so the results do not depend on
    the number of workers; the longest runs are sent first."""
    return costliest_first(_train_one, runs, lambda r: r["steps"] * r["net"].weight_size, n_jobs)


def estimator_grid(net: Composite, data, w0, optimizer: str, lrs, steps: int, seeds, batch_size: int = 64,
                   metric=None, regularizer_grad=None, record_points: int = RECORD_POINTS, probe_steps: int = PROBE_STEPS,
                   probe_every: int = PROBE_EVERY, n_jobs: int = -1):
    """Train with backpropagation and with forward gradients, for each learning
    rate and seed, from the same w0 with the same minibatches.

    ``optimizer`` is ``"sgd"`` or ``"adam"``.  Returns two pandas tables:

    * curves: estimator, lr, seed, t, metric value (``metric(w)``, default the
      full-batch mean of F);
    * runs: one row per run with the final metric, the mean metric over the
      second half of the run (a stationary level), whether it diverged, and the
      mean progress ⟨∇ℓ, step⟩/‖∇ℓ‖ and step length over the first
      ``probe_steps`` iterations (:class:`StepProbe`).

    ``n_jobs``: joblib workers (-1: all cores); the tables do not depend on it.
    """
    runs = _grid_runs(net, data, w0, optimizer, lrs, steps, seeds, batch_size, metric, regularizer_grad,
                      record_points, probe_steps, probe_every)
    out = _run_all(runs, n_jobs)
    return pd.concat([c for c, _ in out], ignore_index=True), pd.DataFrame([r for _, r in out])


def _first_crossing(t, y, level) -> float:
    """First time the curve y(t) (recorded at t) is at or below ``level``,
    interpolated linearly between records; inf if never, t[0] if already."""
    hit = np.nonzero(y <= level)[0]
    if not len(hit):
        return float("inf")
    i = hit[0]
    if i == 0:
        return float(t[0])
    t0, t1, y0, y1 = t[i - 1], t[i], y[i - 1], y[i]
    return float(t0 + (t1 - t0) * (y0 - level) / (y0 - y1)) if y0 != y1 else float(t1)


def slowdown(t, loss_backprop, loss_forward) -> float:
    """How many times longer the forward-gradient run takes than the backprop run,
    read off two loss curves recorded at the iterations t.

    If forward gradients end worse: T / (time at which backprop first reaches
    the forward-gradient run's final loss), ≥ 1, inf if backprop starts below
    it.  If they end better: (time at which forward gradients first reach the
    backprop run's final loss) / T, < 1.  Crossing times are interpolated
    linearly between records."""
    t = np.asarray(t, dtype=float)
    b, f = np.asarray(loss_backprop, dtype=float), np.asarray(loss_forward, dtype=float)
    T = t[-1]
    if not np.isfinite(f[-1]):
        return float("inf")
    if f[-1] >= b[-1]:
        tc = _first_crossing(t, b, f[-1])
        return float("inf") if tc <= 0 else float(T / tc)
    return float(_first_crossing(t, f, b[-1]) / T)



def one_step_ratios(n: int, gamma: float, steps: int, seeds, w0=None) -> np.ndarray:
    """SGD with forward gradients on f(w) = ½‖w‖² (ℓ = f, ∇f = w): all ratios
    ‖w_{t+1}‖² / ‖w_t‖² met in ``steps`` iterations from w0 (default all ones),
    for each seed.  Their conditional mean is exactly 1 − 2γ + γ²(n + 2),
    whatever w_t is, so their average estimates it without bias; the
    second moment E‖w_t‖² shrinks iff γ < 2/(n + 2)."""
    net = quadratic_net(n)
    x = np.zeros((1, 1))
    w0 = np.ones(n) if w0 is None else np.asarray(w0, dtype=float)
    out = []
    for s in seeds:
        ratios = []
        cb = lambda t, w, g, step, r=ratios: r.append(float(w @ w) / float((w + step) @ (w + step)))  # noqa: E731
        train(ForwardGradient(net), w0, SGD(gamma), steps, x, seed=s, callback=cb, stop_above=np.inf)
        out.extend(ratios)
    return np.array(out)


# --------------------------------------------------------------------------
# The chapter's studies
# --------------------------------------------------------------------------


def beale_study(point, Ks, repeats: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """The Monte Carlo study of the Beale function at ``point`` (Gao et al., Figure 1).

    Returns ``(table, u)``: :func:`monte_carlo_errors` with the derived columns
    ``rms`` = √MSE, ``closed_form_rms`` = √((n+1)/K)‖u‖, ``z_mse`` (MSE minus the
    closed form, in standard errors) and ``grand_mean_ratio`` (error of the grand
    mean over its expected size if unbiased), and u = ∇f(point) by the backward pass."""
    net, x = beale_problem()
    w = np.asarray(point, dtype=float)
    u = passes(net, x, w).gradient()
    mc = monte_carlo_errors(net, x, w, Ks, repeats, seed=seed)
    mc["rms"] = np.sqrt(mc.mse)
    mc["closed_form_rms"] = np.sqrt(mc.closed_form_mse)
    mc["z_mse"] = (mc.mse - mc.closed_form_mse) / mc.mse_se
    mc["grand_mean_ratio"] = mc.grand_mean_error / mc.grand_mean_rms
    return mc, u


def arrow_averages(point, Ks, seed: int = 0) -> pd.DataFrame:
    """One average of K forward gradients of the Beale function at ``point`` per K
    (the arrows of Gao et al.'s Figure 1): columns K, g_x, g_y."""
    net, x = beale_problem()
    w = np.asarray(point, dtype=float)
    rows = []
    for K in Ks:
        V = gaussian_directions(rng.derive_key("fbsgd.chapter.beale_arrows", seed, K), 0, K, 2)
        g = forward_gradients(net, x, w, V).mean(axis=0)
        rows.append(dict(K=int(K), g_x=float(g[0]), g_y=float(g[1])))
    return pd.DataFrame(rows)


def variance_study(dims, Ks, draws: int, n_samples: int, mlp_inputs: int, mlp_hidden: int, seed: int = 0,
                   data_seed: int = 0, mlp_samples: int = 500) -> pd.DataFrame:
    """Relative variance of the mean of K forward gradients against (n+1)/K.

    Logistic regression with n = d features for each d in ``dims`` (at a random
    weight 0.3·N(0, I), drawn in order from ``default_rng(data_seed)``), and the
    perceptron of :func:`fbsgd.studies.forward_gradients.problems.mlp_classifier` at its initial weight on
    the first ``mlp_samples`` samples.  One row per (model, n, K) with the columns
    of :func:`variance_ratio` and ``z`` = (measured − closed form)/s.e."""
    rows = []
    w_rng = np.random.default_rng(data_seed)
    for n in dims:
        prob = LogisticRegression.generate(d=n, M=n_samples, data_seed=data_seed)
        w_at = 0.3 * w_rng.standard_normal(n)
        for K in Ks:
            rows.append(dict(model="logistic regression", **variance_ratio(prob.net, prob.data, w_at, K, draws, seed=seed)))
    data = teacher_classification(M=n_samples, d=mlp_inputs, data_seed=data_seed)
    net = mlp_classifier(mlp_inputs, mlp_hidden)
    w0 = net.init_weight(np.random.default_rng(data_seed))
    for K in Ks:
        rows.append(dict(model="perceptron", **variance_ratio(net, data[: min(n_samples, mlp_samples)], w0, K, draws, seed=seed)))
    var = pd.DataFrame(rows)
    var["z"] = (var.variance - var.closed_form_variance) / var.variance_se
    return var


def stability_study(dims, cs, steps: int, seeds) -> pd.DataFrame:
    """SGD with one forward gradient per step on ½‖w‖², γ = c·2/(n+2) for each n in
    ``dims`` and c in ``cs``: the measured mean one-step factor ``rho`` of ‖w‖² (with
    its s.e.), the closed form 1 − 2γ + γ²(n+2), the backprop factor (1 − γ)², and
    ``z`` = (measured − closed form)/s.e."""
    rows = []
    for n in dims:
        for c in cs:
            gamma = 2 * c / (n + 2)
            r = one_step_ratios(n, gamma, steps, seeds)
            rows.append(dict(n=n, c=c, gamma=gamma, rho=float(r.mean()), rho_se=float(r.std(ddof=1) / np.sqrt(r.size)),
                             closed_form_rho=1 - 2 * gamma + gamma**2 * (n + 2), backprop_rho=(1 - gamma) ** 2, ratios=r.size))
    stab = pd.DataFrame(rows)
    stab["z"] = (stab.rho - stab.closed_form_rho) / stab.rho_se
    return stab


def training_grid(models: dict, optimizer: str, lrs: dict, steps: dict, seeds, batch_size: int = 64, n_jobs: int = -1):
    """:func:`estimator_grid` for each model; ``models`` maps a name to a dict with
    ``net``, ``data``, ``w0`` and optionally ``metric`` and ``regularizer_grad``;
    ``lrs`` and ``steps`` map the name to its learning rates and iterations.
    Returns ``(curves, runs)`` with a ``model`` column (and ``optimizer`` in curves).
    All models' runs share one pool of ``n_jobs`` joblib workers (-1: all cores)."""
    per_model = {name: _grid_runs(m["net"], m["data"], m["w0"], optimizer, lrs[name], steps[name], seeds, batch_size,
                                  m.get("metric"), m.get("regularizer_grad"), RECORD_POINTS, PROBE_STEPS, PROBE_EVERY)
                 for name, m in models.items()}
    out = iter(_run_all([r for runs in per_model.values() for r in runs], n_jobs))
    curves, runs = [], []
    for name, model_runs in per_model.items():
        done = [next(out) for _ in model_runs]
        curves.append(pd.concat([c for c, _ in done], ignore_index=True).assign(model=name, optimizer=optimizer))
        runs.append(pd.DataFrame([r for _, r in done]).assign(model=name))
    return pd.concat(curves, ignore_index=True), pd.concat(runs, ignore_index=True)


def summarize_runs(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Per (model, lr, estimator): medians over seeds of the initial, final and
    second-half loss, the number of diverged runs, the early progress and step
    length per unit of lr, and the ``slowdown`` of forward gradients against backprop
    read off the median curves (:func:`slowdown`; the same value on both rows)."""
    rows = []
    for (model, lr, est), g in runs.groupby(["model", "lr", "estimator"], sort=False):
        rows.append(dict(model=model, lr=lr, estimator=est, initial=g.initial.median(), final=g.final.median(),
                         second_half=g.second_half.median(), diverged=int(g.diverged.sum()),
                         early_progress_per_lr=g.early_progress.mean() / lr,
                         early_step_length_per_lr=g.early_step_length.mean() / lr))
    tab = pd.DataFrame(rows)
    slow = {}
    for (model, lr), g in curves.groupby(["model", "lr"]):
        med = g.groupby(["estimator", "t"]).loss.median().unstack(0)
        slow[(model, lr)] = slowdown(med.index.to_numpy(), med["backprop"].to_numpy(), med["forward gradient"].to_numpy())
    tab["slowdown"] = [slow[(m, lr)] for m, lr in zip(tab.model, tab.lr)]
    return tab


def estimator_ratios(table: pd.DataFrame, column: str = "second_half") -> pd.DataFrame:
    """Per (model, lr) of a :func:`summarize_runs` table: ``column`` with backprop, with
    forward gradients, and their ratio forward / backprop (sorted by model, then lr)."""
    wide = table.pivot_table(index=["model", "lr"], columns="estimator", values=column, aggfunc="first")
    out = pd.DataFrame(dict(backprop=wide["backprop"], forward=wide["forward gradient"])).reset_index()
    out["ratio"] = out.forward / out.backprop
    return out.sort_values(["model", "lr"], ignore_index=True)


def noise_floors(problem, w_opt, batch_size: int, runs: pd.DataFrame, steps: int) -> pd.DataFrame:
    """Measured against linearized noise floors of constant-step SGD on ``problem``
    (a :class:`fbsgd.problems.LogisticRegression`) at its minimizer ``w_opt``.

    One row per learning rate of ``runs`` (the runs of ``problem``): the predicted floors
    of :func:`linearized_floor` with Hessian H and minibatch covariance Σ/batch_size at
    w*, the measured ones (mean over seeds of the second-half excess loss), their
    ratios forward/backprop, and ``relaxation_times`` = γ·μ_H·T/2, the number of
    relaxation times of the slowest direction in the first half of a run."""
    G = passes(problem.net, problem.data, w_opt).per_sample_gradient()
    Sigma = np.cov(G.T, bias=True) / batch_size
    H = problem.hessian(w_opt)
    mu_H = float(np.linalg.eigvalsh(H)[0])
    meas = runs.groupby(["lr", "estimator"]).second_half.mean().unstack()
    lrs = sorted(runs.lr.unique())
    floors = pd.DataFrame([dict(lr=lr, predicted_backprop=linearized_floor(H, Sigma, lr, "backprop"),
                                predicted_forward=linearized_floor(H, Sigma, lr, "forward")) for lr in lrs])
    floors["measured_backprop"] = floors.lr.map(meas["backprop"])
    floors["measured_forward"] = floors.lr.map(meas["forward gradient"])
    floors["measured_ratio"] = floors.measured_forward / floors.measured_backprop
    floors["predicted_ratio"] = floors.predicted_forward / floors.predicted_backprop
    floors["n"] = problem.d
    floors["mu_H"] = mu_H
    floors["relaxation_times"] = floors.lr * mu_H * steps / 2
    return floors


def adam_scales(table: pd.DataFrame, models: dict) -> pd.DataFrame:
    """Add to a summary table the numbers of the Adam mechanism, per model: n, the
    ratio ‖u‖₁/‖u‖₂ of the exact gradient at the start (the most a sign-like step
    advances along −u, in units of lr), and the predicted step length of Adam with
    forward gradients, √(1 + n(1−β₁)/(1+β₁)) in units of lr."""
    l1l2, n = {}, {}
    for name, m in models.items():
        u = passes(m["net"], m["data"], m["w0"]).gradient()
        if m.get("regularizer_grad") is not None:
            u = u + m["regularizer_grad"](m["w0"])
        l1l2[name] = float(np.abs(u).sum() / np.linalg.norm(u))
        n[name] = m["net"].weight_size
    out = table.copy()
    out["l1_over_l2_at_start"] = out.model.map(l1l2)
    out["n"] = out.model.map(n)
    out["predicted_fg_step_length_per_lr"] = np.sqrt(1 + out.n * (1 - ADAM_BETA1) / (1 + ADAM_BETA1))
    return out
