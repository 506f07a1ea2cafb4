"""The annealing schedule against hand-computed sequences and the original code's formula."""

from fractions import Fraction

import pytest

from annealing_kd.common.errors import UsageError
from annealing_kd.common.methods.annealing import AnnealingSchedule, phi, temperature


def annealing_schedule(n, tau):
    return list(AnnealingSchedule(n, tau))


def temps(n, tau):
    return [t for t, _ in annealing_schedule(n, tau)]


def test_14_epochs_tau_7():
    assert temps(14, 7) == [7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert [p for _, p in annealing_schedule(14, 7)] == pytest.approx(
        [1 / 7, 1 / 7, 2 / 7, 2 / 7, 3 / 7, 3 / 7, 4 / 7, 4 / 7, 5 / 7, 5 / 7, 6 / 7, 6 / 7, 1, 1])


def test_200_epochs_tau_10():
    assert temps(200, 10) == [t for t in range(10, 0, -1) for _ in range(20)]
    sched = annealing_schedule(200, 10)
    assert sched[0][1] == pytest.approx(0.1) and sched[-1][1] == 1.0


def test_10_epochs_tau_7_spreads_stages_and_ends_at_one():
    # T_i = 7 - floor(7 i / 10) for i = 0..9
    assert temps(10, 7) == [7, 7, 6, 5, 5, 4, 3, 3, 2, 1]
    phis = [p for _, p in annealing_schedule(10, 7)]
    assert phis == pytest.approx([1 / 7, 1 / 7, 2 / 7, 3 / 7, 3 / 7, 4 / 7, 5 / 7, 5 / 7, 6 / 7, 1])
    assert max(phis) == 1.0 and phis[-1] == 1.0


def test_degenerate_schedules():
    assert annealing_schedule(1, 1) == [(1, 1.0)]
    assert annealing_schedule(7, 1) == [(1, 1.0)] * 7


def test_fewer_epochs_than_tau_is_a_clear_error():
    with pytest.raises(UsageError, match=r"max_temperature 7 exceeds the phase-1 epochs 3.*<= 3.*per optimizer step"):
        annealing_schedule(3, 7)


@pytest.mark.parametrize("bad", [(0, 1), (5, 0)])
def test_empty_or_zero_temperature_is_an_error(bad):
    with pytest.raises(UsageError):
        annealing_schedule(*bad)


def original_multipliers(n, tau):
    """The original code: T_code = 1 + floor(i / int(n / tau)), multiplier T_code / tau."""
    stage = n // tau
    return [Fraction(1 + i // stage, tau) for i in range(n)]


@pytest.mark.parametrize("n,tau", [(14, 7), (200, 10), (10, 10), (30, 5), (12, 3), (4, 1)])
def test_equals_original_when_epochs_are_a_multiple_of_tau(n, tau):
    ours = [Fraction(tau - (temperature(i, n, tau) - 1), tau) for i in range(n)]
    assert ours == original_multipliers(n, tau)
    assert [p for _, p in annealing_schedule(n, tau)] == pytest.approx([float(m) for m in ours])


def test_original_overshoots_where_ours_does_not():
    assert max(original_multipliers(10, 7)) == Fraction(10, 7)  # the fault we fix
    assert all(p <= 1.0 for _, p in annealing_schedule(10, 7))


@pytest.mark.parametrize(
    "n,tau", [(n, tau) for tau in (1, 2, 3, 7, 10) for n in range(tau, 40)])
def test_properties_for_every_n_at_least_tau(n, tau):
    sched = annealing_schedule(n, tau)
    ts = [t for t, _ in sched]
    assert ts[0] == tau and ts[-1] == 1
    assert set(ts) == set(range(1, tau + 1))  # every temperature gets a stage
    assert all(a >= b for a, b in zip(ts, ts[1:]))  # never rises
    counts = [ts.count(t) for t in range(1, tau + 1)]
    assert max(counts) - min(counts) <= 1  # stages as equal as integers allow
    assert sched[0][1] == pytest.approx(1 / tau) and sched[-1][1] == 1.0
    assert phi(1, tau) == 1.0
