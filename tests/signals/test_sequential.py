"""Exact Poisson MaxSPRT (signals.sequential).

Reference values: R package Sequential (Silva & Kulldorff, CRAN), source file
R/CV.Poisson.R, table ``TableCV.PoissonM`` ("exact critical values for the continuous
Poisson based MaxSPRT, with a significance level of 0.05", D = 0, rows T, columns M), which
``CV.Poisson(SampleSize=T, D=0, M, alpha=0.05)`` returns verbatim for T >= 2.  The M = 1
column is the alpha = 0.05 column of Kulldorff et al. (2011, Sequential Analysis 30:58-78,
Table 1).  Values copied here to 14 digits.
"""

import math

import numpy as np
import pytest
from scipy import stats

from signals.sequential import (
    maxsprt_poisson_alpha,
    maxsprt_poisson_cv,
    maxsprt_poisson_group_cv,
    maxsprt_poisson_group_performance,
    maxsprt_poisson_llr,
    maxsprt_poisson_monitor,
    maxsprt_poisson_performance,
)

# (T, M, CV) from R Sequential TableCV.PoissonM (alpha = 0.05)
R_TABLE = [
    (1, 1, 2.85393700326128),
    (1, 2, 2.36663822744395),
    (1, 3, 1.7742178463146),
    (1.5, 1, 2.96497144429574),
    (2, 4, 2.00015758807598),
    (3, 6, 1.76648463065627),
    (5, 1, 3.29718279728549),
    (6, 10, 1.74055087831132),
    (10, 1, 3.46795158033368),
    (10, 2, 3.23800870652229),
    (10, 3, 3.06424796686384),
    (10, 4, 2.92156132978567),
    (10, 6, 2.69058633468102),
    (10, 8, 2.4848340056375),
    (10, 10, 2.2814406139523),
    (20, 1, 3.62812301587201),
    (50, 4, 3.4555214311217),
    (100, 1, 3.95232090599911),
    (100, 10, 3.35579446678864),
    (200, 1, 4.07482766406364),
]


@pytest.mark.parametrize(("T", "M", "ref"), R_TABLE)
def test_cv_matches_r_sequential_table(T, M, ref):
    assert maxsprt_poisson_cv(T, 0.05, M) == pytest.approx(ref, abs=1e-8)


def test_cv_headline_value():
    # 3.4679 (truncated; R prints 3.467952, the exact value is 3.46795158...)
    assert maxsprt_poisson_cv(10) == pytest.approx(3.4679, abs=1e-4)
    assert math.floor(maxsprt_poisson_cv(10, alpha=0.05, min_events=1) * 1e4) / 1e4 == 3.4679


def test_cv_large_T_matches_r_table_and_is_fast():
    import time

    t = time.perf_counter()
    v = maxsprt_poisson_cv(1000.0, 0.05, 1)
    elapsed = time.perf_counter() - t
    assert v == pytest.approx(4.32491732176988, abs=1e-8)
    assert elapsed < 5.0  # ~0.15 s alone; generous for a shared machine
    t = time.perf_counter()
    maxsprt_poisson_cv(1000.0, 0.05, 1)
    assert time.perf_counter() - t < 1e-3  # cached


def test_cv_gives_nominal_alpha_exactly():
    for T, M, a in [(10, 1, 0.05), (4, 3, 0.01), (50, 4, 0.001), (0.8, 1, 0.1)]:
        cv = maxsprt_poisson_cv(T, a, M)
        assert maxsprt_poisson_alpha(cv, T, M) == pytest.approx(a, rel=1e-9)


def test_cv_monotone_in_T_alpha_and_M():
    Ts = [0.5, 1, 2, 5, 10, 30, 100]
    cvs = [maxsprt_poisson_cv(T) for T in Ts]
    assert all(np.diff(cvs) > 0)
    alphas = [0.2, 0.1, 0.05, 0.01, 0.001]
    cva = [maxsprt_poisson_cv(10, a) for a in alphas]
    assert all(np.diff(cva) > 0)
    cvm = [maxsprt_poisson_cv(10, 0.05, M) for M in range(1, 9)]
    assert all(np.diff(cvm) < 0)  # a minimum-events rule frees alpha for a lower boundary


def test_min_events_without_solution_raises_like_r():
    # P(N(1) >= 4) = 0.019 < 0.05: R Sequential stops with "Does not have solution"
    assert stats.poisson.sf(3, 1.0) < 0.05
    with pytest.raises(ValueError, match="no critical value"):
        maxsprt_poisson_cv(1, 0.05, 4)
    with pytest.raises(ValueError):
        maxsprt_poisson_cv(0.0)
    with pytest.raises(ValueError):
        maxsprt_poisson_cv(10, alpha=0.7)


def test_min_events_blocks_early_single_event_signals():
    # with M = 3 a path with 2 very early events cannot signal, whatever its LLR
    T, M = 10, 3
    cv = maxsprt_poisson_cv(T, 0.05, M)
    assert maxsprt_poisson_llr(2, 0.001) > cv
    res = maxsprt_poisson_monitor([[2, 2, 3]], [[0.001, 0.01, 0.02]], T, min_events=M, t_grid_per_decade=None)
    assert res.first_look[0] == 2


# ---------------------------------------------------------------- independent checks
def _simulated_alpha(cv, T, M, n_paths, seed):
    """Continuous-time Monte Carlo: arrival times are cumulative Exp(1) sums; H0 is
    rejected iff some k >= M has LLR(k, S_k) >= cv with S_k <= T (the LLR is maximal at
    arrivals).  Independent of the boundary-time recursion."""
    rng = np.random.default_rng(seed)
    K = int(T + 8 * math.sqrt(T) + 20)
    k = np.arange(1, K + 1)
    rejected = 0
    for _ in range(n_paths // 25_000):  # chunks keep memory small
        S = np.cumsum(rng.exponential(size=(25_000, K)), axis=1)
        llr = maxsprt_poisson_llr(k[None, :], S)
        rejected += ((llr >= cv) & (S <= T) & (k[None, :] >= M)).any(axis=1).sum()
    return rejected / n_paths


@pytest.mark.parametrize(("T", "M"), [(10, 1), (3, 2), (25, 4)])
def test_alpha_agrees_with_continuous_time_monte_carlo(T, M):
    cv = maxsprt_poisson_cv(T, 0.05, M)
    n = 200_000
    est = _simulated_alpha(cv, T, M, n, seed=20240611 + M)
    se = math.sqrt(0.05 * 0.95 / n)
    assert abs(est - 0.05) < 4 * se


def test_alpha_from_fine_time_grid_dp_converges_from_below():
    """Dynamic programming on a fine time grid (testing at every grid point) is a different
    exact computation; as the grid refines its alpha increases to the continuous alpha."""
    T, cv = 10.0, maxsprt_poisson_cv(10.0)

    def grid_alpha(n):
        mu = np.linspace(T / n, T, n)
        p = np.zeros(200)
        p[0] = 1.0
        alpha = 0.0
        pmf = stats.poisson.pmf(np.arange(200), T / n)
        c = np.arange(200)
        for m in mu:
            p = np.convolve(p, pmf)[:200]
            rej = maxsprt_poisson_llr(c, m) >= cv
            alpha += p[rej].sum()
            p[rej] = 0.0
        return alpha

    a1, a2, a3 = grid_alpha(100), grid_alpha(1000), grid_alpha(5000)
    assert a1 < a2 < a3 < 0.05
    assert a3 > 0.0485


# ---------------------------------------------------------------- LLR
def test_llr_edge_cases():
    assert maxsprt_poisson_llr(0, 1.0) == 0.0
    assert maxsprt_poisson_llr(0, 0.0) == 0.0
    assert maxsprt_poisson_llr(2, 2.0) == 0.0
    assert maxsprt_poisson_llr(1, 3.0) == 0.0
    assert isinstance(maxsprt_poisson_llr(5, 2.0), float)
    assert maxsprt_poisson_llr(5, 2.0) == pytest.approx(5 * math.log(2.5) - 3)
    assert maxsprt_poisson_llr(3, 0.0) == math.inf
    c = np.array([0, 1, 2, 5, 10])
    out = maxsprt_poisson_llr(c, np.array([1.0, 1.0, 1.0, 1.0, 20.0]))
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, [0, 0, 2 * math.log(2) - 1, 5 * math.log(5) - 4, 0])
    grid = maxsprt_poisson_llr(c[:, None], np.array([0.5, 2.0])[None, :])
    assert grid.shape == (5, 2)
    assert np.isnan(maxsprt_poisson_llr(np.nan, 1.0))


# ---------------------------------------------------------------- performance
def test_performance_null_and_alternative():
    cv = maxsprt_poisson_cv(10)
    null = maxsprt_poisson_performance(10, cv, rr=1.0)
    assert null.power == pytest.approx(0.05, rel=1e-9)
    alt = maxsprt_poisson_performance(10, cv, rr=2.0)
    alt3 = maxsprt_poisson_performance(10, cv, rr=3.0)
    assert 0.05 < alt.power < alt3.power < 1
    assert 0 < alt.expected_signal_time < 10
    assert alt3.expected_signal_time < alt.expected_signal_time
    assert alt.expected_sample_size == pytest.approx(alt.power * alt.expected_signal_time + (1 - alt.power) * 10)


def test_performance_matches_monte_carlo_under_rr():
    T, rr, n = 10.0, 2.0, 200_000
    cv = maxsprt_poisson_cv(T)
    perf = maxsprt_poisson_performance(T, cv, rr=rr)
    rng = np.random.default_rng(7)
    k = np.arange(1, 61)
    n_sig, t_sum = 0, 0.0
    for _ in range(n // 25_000):
        S = np.cumsum(rng.exponential(1 / rr, size=(25_000, 60)), axis=1)
        hit = (maxsprt_poisson_llr(k[None, :], S) >= cv) & (S <= T)
        sig = hit.any(axis=1)
        n_sig += sig.sum()
        t_sum += S[sig, hit[sig].argmax(axis=1)].sum()
    assert abs(n_sig / n - perf.power) < 4 * math.sqrt(perf.power * (1 - perf.power) / n)
    assert t_sum / n_sig == pytest.approx(perf.expected_signal_time, abs=0.03)


# ---------------------------------------------------------------- group sequential
def test_group_single_look_is_the_exact_poisson_test():
    # one look at T = 10: reject iff N >= 16 (P = 0.0487); N >= 15 would give 0.0835
    cv = maxsprt_poisson_group_cv(10, looks=1)
    assert cv == pytest.approx(maxsprt_poisson_llr(15, 10.0), abs=1e-6)
    assert maxsprt_poisson_llr(16, 10.0) >= cv > maxsprt_poisson_llr(15, 10.0)


@pytest.mark.parametrize(("T", "looks", "M"), [(10, 5, 1), (30, 5, 1), (20, 52, 3)])
def test_group_cv_is_the_smallest_conservative_boundary(T, looks, M):
    cv = maxsprt_poisson_group_cv(T, looks=looks, min_events=M)
    at = maxsprt_poisson_group_performance(cv, T, looks=looks, min_events=M).power
    below = maxsprt_poisson_group_performance(cv - 1e-6, T, looks=looks, min_events=M).power
    assert at <= 0.05 < below


def test_group_unequal_sizes_and_equal_sizes_agree():
    a = maxsprt_poisson_group_cv(30, looks=5)
    b = maxsprt_poisson_group_cv(30, group_sizes=[6, 6, 6, 6, 6])
    assert a == pytest.approx(b, abs=1e-12)
    c = maxsprt_poisson_group_cv(30, group_sizes=[5, 6, 6, 5, 8])
    perf = maxsprt_poisson_group_performance(c, group_sizes=[5, 6, 6, 5, 8])
    assert perf.power <= 0.05
    with pytest.raises(ValueError):
        maxsprt_poisson_group_cv(30, group_sizes=[5, 6])


def test_group_alpha_agrees_with_monte_carlo():
    g = np.array([2.0, 0.5, 3.0, 1.5, 3.0])
    cv = maxsprt_poisson_group_cv(10, group_sizes=g, min_events=2)
    exact = maxsprt_poisson_group_performance(cv, group_sizes=g, min_events=2).power
    rng = np.random.default_rng(11)
    n = 400_000
    counts = np.cumsum(rng.poisson(g, size=(n, len(g))), axis=1)  # 16 MB
    mu = np.cumsum(g)
    rej = ((maxsprt_poisson_llr(counts, mu) >= cv) & (counts >= 2)).any(axis=1).mean()
    assert abs(rej - exact) < 4 * math.sqrt(exact * (1 - exact) / n)


def test_group_approaches_continuous_with_frequent_looks():
    cont = maxsprt_poisson_cv(10)
    cvs = [maxsprt_poisson_group_cv(10, looks=n) for n in (1, 10, 100, 1000)]
    assert all(np.diff(cvs) > 0)
    assert all(v < cont for v in cvs)
    assert cont - cvs[-1] < 0.1
    # the continuous boundary applied at n looks spends alpha -> 0.05 from below
    spent = [maxsprt_poisson_group_performance(cont, 10, looks=n).power for n in (10, 100, 2000)]
    assert spent[0] < spent[1] < spent[2] < 0.05
    assert spent[2] > 0.047


def test_group_no_alpha_to_spend_returns_llr_at_M():
    # P(N(2) >= 6) = 0.017 <= 0.05: R CV.G.Poisson returns LLR(M, T)
    assert maxsprt_poisson_group_cv(2, looks=4, min_events=6) == pytest.approx(maxsprt_poisson_llr(6, 2.0))


# ---------------------------------------------------------------- monitor
def test_monitor_first_crossing_and_null_streams():
    T = np.array([10.0, 10.0, 10.0, 5.0])
    looks = np.arange(1, 11)
    exp_ = np.outer(T / 10, looks)  # cumulative expected, reaching T at the last look
    obs = np.zeros_like(exp_)
    obs[0] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 5]  # null-ish: never crosses
    obs[1] = [0, 2, 4, 7, 14, 18, 20, 21, 22, 23]  # elevated: crosses at look 4
    obs[2] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]  # exactly expected
    obs[3] = [0, 0, 0, 0, 0, 0, 0, 0, 12, 12]
    res = maxsprt_poisson_monitor(obs, exp_, T, t_grid_per_decade=None)
    cv10 = maxsprt_poisson_cv(10.0)
    llr1 = maxsprt_poisson_llr(obs[1], exp_[1])
    first = int(np.argmax(llr1 >= cv10))
    assert first == 4 and llr1[3] < cv10 <= llr1[4]
    assert res.first_look.tolist() == [-1, first, -1, 8]
    assert res.llr[1] == pytest.approx(llr1[first]) and res.llr[1] >= cv10
    assert res.cv[0] == res.cv[1] == res.cv[2] == pytest.approx(cv10)
    assert res.cv[3] == pytest.approx(maxsprt_poisson_cv(5.0))
    assert res.llr[0] == pytest.approx(maxsprt_poisson_llr(5, 10.0))  # last look's LLR
    assert res.signalled.tolist() == [False, True, False, True]


def test_monitor_rounds_T_up_and_caches_per_distinct_T(monkeypatch):
    import signals.sequential as seq

    calls = []
    real = seq.maxsprt_poisson_cv
    monkeypatch.setattr(seq, "maxsprt_poisson_cv", lambda T, a, M: calls.append(T) or real(T, a, M))
    rng = np.random.default_rng(3)
    S = 500
    T = rng.choice([10.0, 10.1, 10.2, 40.0], size=S)
    exp_ = np.outer(T, np.arange(1, 53) / 52)
    obs = np.cumsum(rng.poisson(np.diff(exp_, prepend=0, axis=1)), axis=1)
    res = seq.maxsprt_poisson_monitor(obs, exp_, T)
    assert len(calls) == len(set(calls)) <= 4
    assert np.all(res.T_used >= T) and np.all(res.T_used <= T * 1.05)
    assert np.all(res.cv >= [real(t, 0.05, 1) for t in T])  # conservative
    assert (res.first_look >= 0).mean() < 0.1


def test_monitor_ignores_looks_after_T_and_missing_values():
    exp_ = np.array([[1.0, 2.0, 4.0, 8.0]])
    obs = np.array([[0.0, 0.0, 1.0, 30.0]])
    res = maxsprt_poisson_monitor(obs, exp_, 4.0, t_grid_per_decade=None)
    assert res.first_look[0] == -1  # the crossing is at expected 8 > T = 4
    obs2 = np.array([[np.nan, 9.0, 9.0, 9.0]])
    res2 = maxsprt_poisson_monitor(obs2, exp_, 8.0, t_grid_per_decade=None)
    assert res2.first_look[0] == 1


def test_monitor_tiny_T_stream_uses_llr_at_M():
    # T = 0.02: P(N >= 1) < 0.05, no boundary can spend alpha; signals at the first event
    res = maxsprt_poisson_monitor([[0, 1]], [[0.01, 0.02]], 0.02, t_grid_per_decade=None)
    assert res.first_look[0] == 1
    assert res.cv[0] == pytest.approx(maxsprt_poisson_llr(1, 0.02))


# --------------------------------------------------------------------------------------
# odd input: validated or a documented closed form, in bounded time (issue 14, item 5)
# --------------------------------------------------------------------------------------
def test_cv_zero_has_closed_form():
    # LLR >= 0 always holds: the test signals at the M-th event
    assert maxsprt_poisson_alpha(0, 10) == pytest.approx(stats.poisson.sf(0, 10), rel=1e-12)
    assert maxsprt_poisson_alpha(0.0, 10, 3) == pytest.approx(stats.poisson.sf(2, 10), rel=1e-12)
    perf = maxsprt_poisson_performance(10, 0.0)
    assert perf.power == pytest.approx(stats.poisson.sf(0, 20), rel=1e-12)
    # E[first arrival | before T] of a rate-2 process
    assert perf.expected_signal_time == pytest.approx(0.5 * stats.poisson.sf(1, 20) / stats.poisson.sf(0, 20))


@pytest.mark.parametrize("bad", [float("nan"), -0.1, float("inf"), "x", None])
def test_bad_critical_values_are_value_errors(bad):
    with pytest.raises(ValueError, match="cv"):
        maxsprt_poisson_alpha(bad, 10)
    with pytest.raises(ValueError, match="cv"):
        maxsprt_poisson_performance(10, bad)
    with pytest.raises(ValueError, match="cv"):
        maxsprt_poisson_group_performance(bad, 10, looks=4)


@pytest.mark.parametrize("bad", [1.5, 0, -1, float("nan"), True, "2"])
def test_min_events_never_truncated(bad):
    with pytest.raises(ValueError, match="min_events"):
        maxsprt_poisson_cv(10, 0.05, bad)
    with pytest.raises(ValueError, match="min_events"):
        maxsprt_poisson_group_cv(10, looks=4, min_events=bad)
    with pytest.raises(ValueError, match="min_events"):
        maxsprt_poisson_monitor([[3.0]], [[1.0]], 10, min_events=bad)
    # an integral float is an integer
    assert maxsprt_poisson_cv(10, 0.05, 2.0) == maxsprt_poisson_cv(10, 0.05, 2)


def test_bad_t_rr_looks_are_value_errors():
    for T in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="expected_total"):
            maxsprt_poisson_alpha(3.0, T)
    with pytest.raises(ValueError, match="rr"):
        maxsprt_poisson_performance(10, 3.0, rr=float("nan"))
    with pytest.raises(ValueError, match="looks"):
        maxsprt_poisson_group_cv(10, looks=2.5)
    with pytest.raises(ValueError, match="observed"):
        maxsprt_poisson_monitor([[-1.0]], [[1.0]], 10)
    with pytest.raises(ValueError, match="expected"):
        maxsprt_poisson_monitor([[1.0]], [[float("inf")]], 10)


def test_large_t_asymptotic_alpha_matches_exact_where_both_run():
    """The calibrated OU extrapolation from T0 against the exact recursion at T = 4 T0 and 16 T0."""
    from signals.sequential import _alpha_continuous, _continuous_path

    # measured: -0.15 % .. -0.84 % at T0 = 500 -> 2000, -0.02 % .. -0.58 % at 1000 -> 4000
    # (and -0.09 % .. -0.23 % at the production T0 = 5000 -> 20000, too slow for a test)
    for cv in (3.5, 5.0, 8.0):
        for t0, T in ((500.0, 2000.0), (1000.0, 4000.0)):
            exact = _continuous_path(cv, T, 1)[0]
            approx = _alpha_continuous(cv, T, 1, t_exact_max=t0)
            assert approx == pytest.approx(exact, rel=0.01), (cv, T)
    # at or below the switch the route is the exact one
    assert _alpha_continuous(4.0, 200.0, 2, t_exact_max=250.0) == _continuous_path(4.0, 200.0, 2)[0]


def test_large_t_is_bounded_and_monotone():
    cv5k = maxsprt_poisson_cv(5000.0)
    cv1e5 = maxsprt_poisson_cv(1e5)  # does not finish with the exact recursion
    assert cv5k < cv1e5 < cv5k + 0.6
    assert maxsprt_poisson_alpha(cv1e5, 1e5) == pytest.approx(0.05, rel=1e-6)
    with pytest.raises(ValueError, match="5000"):
        maxsprt_poisson_performance(1e5, cv1e5)
    # monitor at counts of 1e9 (used to allocate GBs of Poisson kernels)
    r = maxsprt_poisson_monitor([[1.0e9 + 2e5]], [[1.0e9]], 1.0e9)
    assert np.isfinite(r.cv[0]) and r.cv[0] > cv1e5 and r.signalled[0]


def test_group_cv_windowed_and_large_t():
    # few looks keep this fast; the windowed recursion at T = 1e6, and the scaled route above it
    cv6 = maxsprt_poisson_group_cv(1e6, looks=4)
    assert maxsprt_poisson_group_cv(1e8, looks=4) == pytest.approx(cv6, abs=1e-12)
    assert maxsprt_poisson_group_performance(cv6, 1e6, looks=4, rr=1.0).power <= 0.05 + 1e-9
    assert maxsprt_poisson_group_cv(1e4, looks=4) == pytest.approx(cv6, abs=0.01)
