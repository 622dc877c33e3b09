"""In-context adaptation on top of the model: what the target runs return changes predictions and proposals.

The trained network reads every trial, but it was trained mostly on states before or shortly after the
first target runs, so on its own its predictions barely move when target runs come back worse than
predicted, and it keeps proposing next to a run that just failed. This module is the numpy safety net
applied at proposal time (``TransformerAgent(adapt=True)``, the default; ``adapt=False`` is the ablation):

* **Residual correction.** The model's predicted outcome at each completed target run is compared with the
  observed outcome; a Gaussian process on those residuals (a constant offset with a wide prior, shared by
  every candidate, plus a smooth correction over the unit cube) corrects every candidate's predicted mean
  and rescales its uncertainty: far from the target runs the model's own spread stays, clipped to between
  ``sigma_floor`` and ``sigma_cap`` times the observed residual scale; near them the spread shrinks to the
  run-to-run noise, whose level the residuals' marginal likelihood picks once there are a few runs. With no
  target run nothing changes.
* **Failure avoidance.** Failed target runs (state ``failed``) and diverged ones (an outcome far above the
  other target runs, or at a loss wall far above the nearest cheap cell's outcomes) mark a region: a
  candidate's chance of failing falls off with its distance to each such run, independently per run, and a
  failed run counts ``failed_weight`` (it may have been a crash) where a diverged one counts fully. Along
  learning-rate coordinates the region of a bad run at or above the best completed run's learning rate is
  one-sided: a higher learning rate than the bad run's counts as no farther. A bad run below it (a loss too
  high from too low a rate) has an ordinary, two-sided region.
* **Acquisition.** Once target runs exist, the next configuration maximises the expected improvement over
  the best target outcome under the corrected prediction, times the chance of not failing, times the
  policy head's probability raised to ``policy_prior / sqrt(runs)`` (a prior that fades as target runs come
  back, never below ``policy_weight``). Without the prior, expected improvement chases the grid corners
  where the model is least sure; with it, the early proposals stay near the policy's choice and later ones
  follow the evidence. Before any target run the policy head's choice stands (the k = 1 proposal is the
  model's).
* **The first prediction.** Before any target run has returned, the reported spread is widened by
  ``first_level_share`` of the level change the prediction extrapolates (:func:`first_run_spread`), and
  the reported mean is bent back within the cheap cells' trend (:func:`first_run_level`); what is chosen
  does not change.
* **Calibration.** With target runs, the reported spread is rescaled by how well the same correction
  predicts each run from the others (leave-one-out, :func:`calibrated_spread`); choices do not change.
* **Batches.** Pending configurations (running, not yet returned) and the proposals already picked in this
  call push the next ones away (a local penalty), so ``n > 1`` and parallel workers spread out. Before any
  target run has returned, a batch is the policy's top choices kept ``first_batch_radius`` apart; after,
  each pick believes the earlier ones return their predictions.

Every constant is in :data:`ADAPT_SPEC` (recorded in a checkpoint's config.json). The spread constants
(``sigma_floor``, ``sigma_cap``, the noise range), the policy prior (``policy_prior``, ``policy_decay``) and
the divergence and failure rules were chosen on user-objective task seeds 100-115 and on the real tables'
Setting A with one seed; never on the seeds 0-19 that the suite reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autollm_sampler.agent._features import CellSummary, mean_sqdist
from autollm_sampler.agent._numpy_net import _erf

__all__ = ["ADAPT_SPEC", "TargetEvidence", "calibrated_spread", "correct", "evidence", "failure_prob", "first_run_level", "fit_residuals",
           "first_run_spread", "select", "thin"]

#: every constant of the adaptation, by name (recorded in the checkpoint's config.json feature spec)
ADAPT_SPEC: dict[str, float] = {
    "length_scale": 0.25,  # GP length scale, in unit-cube distance / sqrt(width)
    "noise_frac": 0.08,  # run-to-run noise as a share of the residual scale, with few target runs ...
    "noise_min_runs": 4,  # ... fewer than this many; with more, the share of the highest marginal likelihood
    "noise_frac_low": 0.02,  # ... among noise_steps geometric steps from noise_frac_low ...
    "noise_frac_high": 0.32,  # ... to noise_frac_high
    "noise_steps": 5,
    "sigma_floor": 0.5,  # far from the target runs the spread is at least this share of the residual scale
    "sigma_cap": 2.0,  # ... and at most this share (the model's own spread is widest where it knows least)
    "offset_prior": 2.0,  # prior spread of the constant offset of the residuals, in residual scales
    "residual_clip": 4.0,  # residuals beyond this many residual scales are clipped (diverged runs)
    "diverged_iqr": 3.0,  # a complete target run this many IQRs above the median target run counts as diverged
    "diverged_scales": 10.0,  # ... and so does one this many cheap-cell spreads above the nearest cheap cell's best
    "diverged_rel": 0.2,  # ... when that is also this share of the best's magnitude above it (a loss wall)
    "fail_radius": 0.08,  # failure influence radius, in unit-cube distance / sqrt(width)
    "failed_weight": 0.5,  # how far one failed (not diverged) run closes its region: it may have been a crash
    "upward_reach": 10.0,  # the one-sided (learning-rate) failure region is this much wider in the other coordinates
    "batch_radius": 0.05,  # pending / picked points push candidates within this radius away ...
    "first_batch_radius": 0.1,  # ... and this one before any target run has returned (the policy's picks)
    "policy_weight": 0.05,  # the least weight of the policy's log-probability in the acquisition
    "policy_prior": 1.0,  # the policy as a prior on the acquisition: its log-probability weighs this much ...
    "policy_decay": 0.5,  # ... divided by (target runs so far) ** policy_decay, never below policy_weight
    "max_gp_runs": 128,  # the residual GP reads at most this many target runs: the best half and the latest half
    "first_level_share": 0.5,  # before any target run, the spread grows by this share of the extrapolated level change
    "first_level_cap": 1.5,  # ... and its change from the nearest cheap cell's best stays within this many trend steps
    "calib_min_runs": 4,  # with this many target runs or more, the reported spread is rescaled by the runs' ...
    "calib_quantile": 0.8,  # ... leave-one-out errors: this quantile of them against the normal one's, ...
    "calib_prior_runs": 8,  # ... shrunk towards 1 as if this many runs had been calibrated (to widen) ...
    "calib_prior_runs_narrow": 4,  # ... or this many (to narrow: the spread it rescales errs wide by design), ...
    "calib_max": 3.0,  # ... by at most this factor either way
}


@dataclass
class TargetEvidence:
    """The target runs as the adaptation reads them (objective units, minimisation sign applied)."""

    units: np.ndarray  # [m, W] completed target runs
    y: np.ndarray  # [m] their outcomes, times the space's sign (lower is better)
    mu: np.ndarray  # [m] the model's prediction at each (same sign)
    bad_units: np.ndarray  # [f, W] failed or diverged target runs
    #: [W] coordinates along which a failure extends one-sidedly upward (learning rates: a run that diverged
    #: at some lr says a higher lr diverges too); None: none
    upward: np.ndarray | None = None
    #: [f] how much each bad run says about its region: 1 for a diverged run (a loss wall), ``failed_weight``
    #: for a failed one (a divergence or a crash unrelated to the configuration: one failure is not proof);
    #: None: 1 for every one
    bad_weight: np.ndarray | None = None
    #: [m] the model's own spread at each completed run (for :func:`calibrated_spread`); None: not known
    sd: np.ndarray | None = None
    #: [f] whether each bad run's region extends upward along :attr:`upward` (a divergence from too high a
    #: learning rate); a bad run at a lower learning rate than the best completed run's (a loss too high
    #: from too low a rate: under-training, not divergence) has a symmetric region. None: every one does
    bad_upward: np.ndarray | None = None

    @property
    def empty(self) -> bool:
        return len(self.y) == 0 and len(self.bad_units) == 0

    def believing(self, units: Sequence[np.ndarray], y: Sequence[float], mu: Sequence[float]) -> TargetEvidence:
        """This evidence plus runs taken to have returned ``y`` (where the model predicts ``mu``): pending and
        just-picked configurations in a batch."""
        if not len(units):
            return self
        return TargetEvidence(units=np.concatenate([self.units, np.stack(list(units))]), y=np.concatenate([self.y, y]),
                              mu=np.concatenate([self.mu, mu]), bad_units=self.bad_units, upward=self.upward,
                              bad_weight=self.bad_weight, bad_upward=self.bad_upward)


def diverged_mask(y: np.ndarray, ref: float | None = None, scale: float | None = None) -> np.ndarray:
    """Complete runs that count as failures (loss walls such as 7.0 or 1e9): far above the other target
    runs (with three or more), or, given the nearest cheap cell's best ``ref`` and spread ``scale`` (median
    minus best), both ``diverged_scales`` spreads and ``diverged_rel`` of ``|ref|`` above ``ref`` (so one
    run, or every run, at a wall is seen)."""
    out = np.zeros(len(y), bool)
    if len(y) >= 3:
        q1, med, q3 = np.quantile(y, [0.25, 0.5, 0.75])
        iqr = max(q3 - q1, 1e-3 * max(abs(med), 1e-12))
        out |= y > med + ADAPT_SPEC["diverged_iqr"] * iqr + 1e-12
    if ref is not None and scale is not None and scale > 0 and math.isfinite(ref):
        gap = y - ref
        out |= (gap > ADAPT_SPEC["diverged_scales"] * scale) & (gap > ADAPT_SPEC["diverged_rel"] * abs(ref))
    return out


def _cheap_nearest_first(cells: Sequence[CellSummary]) -> list[CellSummary]:
    """The cheaper cells, nearest the target (log-fidelity distance) first."""
    return sorted((c for c in cells if not c.is_target), key=lambda c: float(np.linalg.norm(c.deltas)))


def first_run_level(value: np.ndarray, cells: Sequence[CellSummary]) -> np.ndarray:
    """The reported mean of predictions made before any target run, kept plausible.

    On a family unlike its training tasks the value head can extrapolate the target's level far beyond what
    the cheap cells show (a RegMix 1B loss of -0.55 from cheap cells at 5.08 and 4.10). The predicted change
    from the nearest cheap cell's best is kept within a reach: ``first_level_cap`` times the change the two
    nearest cells' bests make per unit of fidelity distance, over the nearest cell's distance to the target
    (at least one such step). A change of up to half the reach is kept as it is; a larger one is bent
    smoothly towards the reach, so predictions keep their order. The spread is :func:`first_run_spread`'s of the unclipped prediction, so it still
    says how far the model would have gone. With fewer than two cheap cells nothing changes. Choices are not
    affected.
    """
    cheap = _cheap_nearest_first(cells)
    if len(cheap) < 2:
        return value
    c0, c1 = cheap[0], cheap[1]
    step = abs(c0.best_value - c1.best_value)
    gap = float(np.linalg.norm(np.asarray(c0.deltas, float) - np.asarray(c1.deltas, float)))
    if not (step > 0 and gap > 0 and math.isfinite(step)):
        return value
    reach = ADAPT_SPEC["first_level_cap"] * step * max(float(np.linalg.norm(c0.deltas)) / gap, 1.0)
    delta = np.asarray(value, float) - c0.best_value
    # unchanged up to half the reach, then bent smoothly towards it (so the candidates keep their order)
    h = 0.5 * reach
    far = np.abs(delta) > h
    bent = np.sign(delta) * (h + h * np.tanh((np.abs(delta) - h) / h))
    return c0.best_value + np.where(far, bent, delta)  # type: ignore[no-any-return]


def first_run_spread(value: np.ndarray, std: np.ndarray, cells: Sequence[CellSummary]) -> np.ndarray:
    """The reported spread of predictions made before any target run has returned.

    Such a prediction extrapolates the outcome's level from the cheap cells, and the model misjudges that
    level most (on held-out families it was too sure: 25-67% of first outcomes inside the 80% interval). So
    the spread is widened by ``first_level_share`` of the level change it extrapolates: the larger of how
    far the prediction lies from the nearest cheap cell's best outcome and how far that best moved from the
    next cell's. Choices are not affected (before any target run the policy chooses).
    """
    cheap = _cheap_nearest_first(cells)
    if not cheap:
        return std
    step = abs(cheap[0].best_value - cheap[1].best_value) if len(cheap) > 1 else 0.0
    level = np.maximum(np.abs(np.asarray(value, float) - cheap[0].best_value), step)
    return np.sqrt(np.asarray(std, float) ** 2 + (ADAPT_SPEC["first_level_share"] * level) ** 2)  # type: ignore[no-any-return]


def correct(mu: np.ndarray, sigma: np.ndarray, units: np.ndarray, ev: TargetEvidence,
            gp: _Residuals | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Corrected mean and standard deviation of candidates (minimisation sign) given the target runs
    (``gp``: :func:`fit_residuals` of the same evidence and ``sigma``, when already fitted)."""
    if len(ev.y) == 0:
        return mu, sigma
    ev = thin(ev)
    if gp is None:
        gp = fit_residuals(ev, sigma)
    Ks = gp.const + gp.amp * np.exp(-mean_sqdist(units, ev.units) / (2 * gp.ls2))
    v = np.linalg.solve(gp.L, Ks.T)
    post_var = np.maximum(gp.const + gp.amp - (v * v).sum(0), 0.0)
    mu2 = mu + Ks @ gp.alpha
    return mu2, gp.spread(sigma, post_var)


def fit_residuals(ev: TargetEvidence, sigma: np.ndarray) -> _Residuals:
    """The residual GP :func:`correct` fits on ``ev`` (thinned) for candidates whose model spread is ``sigma``."""
    return _Residuals.fit(thin(ev), float(np.median(sigma)) if len(sigma) else 1.0)


@dataclass
class _Residuals:
    """The residual GP of :func:`correct`: observed minus predicted outcome at the target runs, modelled as a
    constant offset (wide prior, shared by every candidate) plus a smooth local part over the unit cube."""

    r: np.ndarray  # [m] clipped residuals
    scale: float  # the residual scale: rms residual, never below the model's median spread
    const: float  # prior variance of the offset
    amp: float  # prior variance of the local part
    ls2: float  # squared length scale
    noise: float  # run-to-run noise variance
    L: np.ndarray  # Cholesky factor of the runs' kernel plus noise
    alpha: np.ndarray  # (K + noise)^-1 r

    @classmethod
    def fit(cls, ev: TargetEvidence, base: float) -> _Residuals:
        r = ev.y - ev.mu
        scale = max(float(np.sqrt(np.mean(r**2))), base, 1e-9)
        r = np.clip(r, -ADAPT_SPEC["residual_clip"] * scale, ADAPT_SPEC["residual_clip"] * scale)
        m = len(r)
        # the offset has the wider prior, so one run moves every prediction by nearly its residual and does
        # not make the unexplored candidates look better than the run's region
        const = (ADAPT_SPEC["offset_prior"] * scale) ** 2
        amp = max(float(np.var(r)) if m > 1 else 0.0, (0.5 * scale) ** 2)
        ls2 = ADAPT_SPEC["length_scale"] ** 2
        K0 = const + amp * np.exp(-mean_sqdist(ev.units, ev.units) / (2 * ls2))
        noise, L = _noise_level(K0, r, scale)
        alpha = np.linalg.solve(L.T, np.linalg.solve(L, r))
        return cls(r=r, scale=scale, const=const, amp=amp, ls2=ls2, noise=noise, L=L, alpha=alpha)

    def spread(self, sigma: np.ndarray, post_var: np.ndarray) -> np.ndarray:
        """Far from the target runs the model's spread (clipped to ``sigma_floor``..``sigma_cap`` residual
        scales); near them, the noise."""
        sig_far = np.clip(sigma, ADAPT_SPEC["sigma_floor"] * self.scale, ADAPT_SPEC["sigma_cap"] * self.scale)
        return np.sqrt(sig_far**2 * np.minimum(post_var / self.amp, 1.0) + self.noise)  # type: ignore[no-any-return]

    def loo_z(self, sigma: np.ndarray) -> np.ndarray:
        """Each run's standardised leave-one-out error: its residual predicted from the other runs (closed
        form from one inverse), over the spread :func:`correct` would have given it (``sigma``: the model's
        spread at each run)."""
        eye = np.eye(len(self.r))
        Linv = np.linalg.solve(self.L, eye)
        kinv_diag = np.maximum((Linv * Linv).sum(0), 1e-300)
        err = self.alpha / kinv_diag  # r_i minus its prediction from the others
        post_var = np.maximum(1.0 / kinv_diag - self.noise, 0.0)
        return err / np.maximum(self.spread(sigma, post_var), 1e-300)  # type: ignore[no-any-return]


def calibrated_spread(std: np.ndarray, ev: TargetEvidence, gp: _Residuals) -> np.ndarray:
    """The reported spread once target runs have returned, rescaled by how well the same correction predicts
    each run from the others (``gp``: :func:`fit_residuals` of ``ev``; ``ev.sd``: the model's spread at the
    runs).

    The residual GP's spread is built from the model's own spread and a residual scale that never falls
    below it, so where the model is accurate (or unsure but right) the intervals come out too wide, and on
    rough objectives too narrow. With ``calib_min_runs`` or more target runs, each run's leave-one-out error
    is standardised by the spread it would have had; the spread of every candidate is multiplied by ``c``,
    the ratio of those errors' ``calib_quantile`` quantile to the normal one's, shrunk towards 1 (geometric
    weight ``m / (m + p)`` for ``m`` runs, ``p`` = ``calib_prior_runs`` to widen and the smaller
    ``calib_prior_runs_narrow`` to narrow, since the spread it rescales is built to err wide: floors at the
    residual scale, which holds the target's whole level offset) and kept within ``1 / calib_max`` ..
    ``calib_max``. Choices are not affected.
    """
    ev = thin(ev)
    m = len(ev.y)
    if m < ADAPT_SPEC["calib_min_runs"] or ev.sd is None:
        return std
    z = np.abs(gp.loo_z(np.asarray(ev.sd, float)))
    q = float(ADAPT_SPEC["calib_quantile"])
    zq = float(np.quantile(z, q))
    if not math.isfinite(zq):  # never a non-finite spread: the uncalibrated one stands
        return std
    c = max(zq, 1e-6) / (math.sqrt(2.0) * _erfinv(q))
    prior = ADAPT_SPEC["calib_prior_runs"] if c >= 1 else ADAPT_SPEC["calib_prior_runs_narrow"]
    c = math.exp(math.log(c) * m / (m + prior))
    c = min(max(c, 1.0 / ADAPT_SPEC["calib_max"]), ADAPT_SPEC["calib_max"])
    return np.asarray(std, float) * c


def _erfinv(p: float) -> float:
    """Inverse error function by bisection (a scalar, called once per proposal)."""
    lo, hi = 0.0, 6.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if math.erf(mid) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _noise_level(K0: np.ndarray, r: np.ndarray, scale: float) -> tuple[float, np.ndarray]:
    """The run-to-run noise variance of the residual GP and the Cholesky factor of ``K0 + noise I``.

    With fewer than ``noise_min_runs`` runs the noise is ``noise_frac`` of the residual scale; with more, the
    fraction of ``noise_fracs`` (geometric steps from ``noise_frac_low`` to ``noise_frac_high``) of the
    highest marginal likelihood of the residuals, since tasks differ in noise and one fixed share leaves
    the intervals too wide on quiet tasks and too narrow on noisy ones.
    """
    m = len(r)
    eye = np.eye(m)
    if m < ADAPT_SPEC["noise_min_runs"]:
        fracs = np.array([ADAPT_SPEC["noise_frac"]])
    else:
        fracs = np.geomspace(ADAPT_SPEC["noise_frac_low"], ADAPT_SPEC["noise_frac_high"], int(ADAPT_SPEC["noise_steps"]))
    best: tuple[float, float, np.ndarray] | None = None
    for f in fracs:
        noise = float((f * scale) ** 2)
        L = np.linalg.cholesky(K0 + (noise + 1e-12) * eye)
        a = np.linalg.solve(L, r)
        loglik = -0.5 * float(a @ a) - float(np.log(np.diag(L)).sum())
        if best is None or loglik > best[0]:
            best = (loglik, noise, L)
    assert best is not None
    return best[1], best[2]


def thin(ev: TargetEvidence) -> TargetEvidence:
    """At most ``max_gp_runs`` runs for the GP (its cost grows with the cube of the count): the best outcomes
    and the most recent runs, half each; the failed/diverged set is kept whole."""
    keep = _thin_keep(ev.y)
    if keep is None:
        return ev
    return TargetEvidence(units=ev.units[keep], y=ev.y[keep], mu=ev.mu[keep], bad_units=ev.bad_units, upward=ev.upward,
                          bad_weight=ev.bad_weight, sd=None if ev.sd is None else ev.sd[keep], bad_upward=ev.bad_upward)


def _thin_keep(y: np.ndarray) -> np.ndarray | None:
    """The indices :func:`thin` keeps (None: all)."""
    m_max = int(ADAPT_SPEC["max_gp_runs"])
    m = len(y)
    if m <= m_max:
        return None
    best = np.argsort(y, kind="stable")[: m_max // 2]
    rest = np.setdiff1d(np.arange(m), best)
    return np.sort(np.concatenate([best, rest[-(m_max - len(best)):]]))


def failure_prob(units: np.ndarray, ev: TargetEvidence) -> np.ndarray:
    """Chance that a candidate fails, from its distance to the failed or diverged target runs.

    Each bad run ``i`` makes a candidate at distance ``d`` fail with chance ``w_i exp(-d^2 / 2 r^2)`` (``w_i``
    its :attr:`TargetEvidence.bad_weight`), independently: a diverged run closes its region, a single failed
    one (which may have been a crash) only halves its appeal, and failures that repeat close it."""
    if len(ev.bad_units) == 0:
        return np.zeros(len(units))
    up = ev.upward
    d2 = mean_sqdist(units, ev.bad_units)
    if up is not None and up.any():  # along the upward axes only a lower value is a distance (higher is as bad)
        rest = ~up
        d1 = (mean_sqdist(units[:, rest], ev.bad_units[:, rest]) * (rest.sum() / len(up)) if rest.any()
              else np.zeros((len(units), len(ev.bad_units))))
        d1 = d1 / ADAPT_SPEC["upward_reach"] ** 2  # an lr wall holds across the other parameters' nearby values
        below = np.maximum(ev.bad_units[None, :, up] - units[:, None, up], 0.0)
        d1 = d1 + (below**2).sum(-1) / len(up)
        one_sided = np.ones(len(ev.bad_units), bool) if ev.bad_upward is None else ev.bad_upward
        d2 = np.where(one_sided[None, :], d1, d2)
    p = np.exp(-d2 / (2 * ADAPT_SPEC["fail_radius"] ** 2))
    if ev.bad_weight is not None:
        p = p * ev.bad_weight[None, :]
    return 1.0 - np.prod(1.0 - p, axis=1)  # type: ignore[no-any-return]


def _ei(mu: np.ndarray, sigma: np.ndarray, best: float) -> np.ndarray:
    s = np.maximum(sigma, 1e-12)
    z = (best - mu) / s
    cdf = 0.5 * (1 + _erf(z / math.sqrt(2)))
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return s * (z * cdf + pdf)  # type: ignore[no-any-return]


def select(score: np.ndarray, mu: np.ndarray, sigma: np.ndarray, units: np.ndarray, ev: TargetEvidence,
           pending_units: np.ndarray, n: int, *, exclude: Sequence[int] = (), runs: int | None = None,
           picked: np.ndarray | None = None, radius: float | None = None) -> list[int]:
    """Pick ``n`` candidates: EI x (1 - failure chance) once target runs exist, the policy before; spread out.

    ``mu``/``sigma`` are the corrected predictions (minimisation sign); ``pending_units`` are configurations
    running now (not in the history's completed runs). ``exclude``: candidate indices never picked;
    ``picked``: points already chosen in this call (they push away like pending ones); ``runs``: the number
    of target runs the policy prior counts (default: the evidence's); ``radius``: how far pending and picked
    points push (default ``batch_radius``).
    """
    logp = score - score.max()
    logp = logp - np.log(np.exp(logp).sum())
    if len(ev.y) or len(ev.bad_units):
        best = float(ev.y.min()) if len(ev.y) else float(np.min(mu))
        ei = _ei(mu, sigma, best)
        ok = 1.0 - failure_prob(units, ev)
        runs = len(ev.y) + len(ev.bad_units) if runs is None else runs
        w = max(ADAPT_SPEC["policy_prior"] / runs ** ADAPT_SPEC["policy_decay"], ADAPT_SPEC["policy_weight"])
        base = np.log(np.maximum(ei * ok, 1e-300)) + w * logp
        # a candidate more likely to fail than not comes after every other one (the policy prior must not
        # pull the next run back into a failed region)
        base = np.where(ok < 0.5, base - 1e6, base)
    else:
        base = logp.copy()
    picks: list[int] = []
    taken = [pending_units] if len(pending_units) else []
    if picked is not None and len(picked):
        taken.append(picked)
    if len(exclude):  # base is this call's own array (np.where / copy above)
        base[list(exclude)] = -np.inf
    r2 = (ADAPT_SPEC["batch_radius"] if radius is None else radius) ** 2
    for _ in range(min(n, len(score))):
        acq = base.copy()
        if taken:
            d2 = mean_sqdist(units, np.concatenate(taken)).min(axis=1)
            acq = acq + np.log(np.maximum(1.0 - np.exp(-d2 / (2 * r2)), 1e-12))
        if picks:
            acq[picks] = -np.inf
        i = int(np.argmax(acq))
        picks.append(i)
        taken.append(units[i : i + 1])
    while len(picks) < n:  # fewer candidates than asked for: repeat the last, as the policy's order does
        picks.append(picks[-1] if picks else 0)
    return picks


def evidence(units: np.ndarray, y: np.ndarray, mu: np.ndarray, failed_units: Sequence[np.ndarray], *,
             ref: float | None = None, scale: float | None = None, upward: np.ndarray | None = None) -> TargetEvidence:
    """Split completed target runs into the residual data and the diverged ones (with the failed runs);
    ``ref``/``scale``/``upward``: see :func:`diverged_mask` and :class:`TargetEvidence`."""
    div = diverged_mask(y, ref, scale)
    bad = [units[div]] + ([np.stack(list(failed_units))] if len(failed_units) else [])
    W = units.shape[1] if units.ndim == 2 else 0
    bad_units = np.concatenate(bad) if any(len(b) for b in bad) else np.zeros((0, W))
    weight = np.concatenate([np.ones(int(div.sum())), np.full(len(failed_units), ADAPT_SPEC["failed_weight"])])
    bad_upward = None
    if upward is not None and upward.any() and len(bad_units) and (~div).any():
        # a wall from too high a learning rate lies above the best run; a bad run below it is under-trained
        best = units[~div][int(np.argmin(y[~div]))]
        bad_upward = (bad_units[:, upward] >= best[upward] - 1e-12).all(axis=1)
    return TargetEvidence(units=units[~div], y=y[~div], mu=mu[~div], bad_units=bad_units, upward=upward,
                          bad_weight=weight, bad_upward=bad_upward)
