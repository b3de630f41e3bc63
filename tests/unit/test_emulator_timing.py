"""The emulator's server timing (workers/emulator/timing.py): exact, or realistic on demand."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from workers.emulator.config import EmulatorConfig
from workers.emulator.timing import REALISTIC, server_times


def test_default_timing_is_exact_and_draws_nothing() -> None:
    rng = random.Random(7)
    state = rng.getstate()
    assert server_times(EmulatorConfig(speed=0.1, queue_delay=0.5), 60.0, rng) == (0.5, 6.0)
    assert server_times(EmulatorConfig(fixed=3.0), 600.0, rng) == (0.5, 3.0)
    assert rng.getstate() == state  # the fault dice of existing seeds are unchanged


def test_realistic_timing_has_the_documented_shape() -> None:
    config = EmulatorConfig(speed=0.1, queue_delay=0.5, **REALISTIC)
    rng = random.Random(1)
    draws = [server_times(config, 100.0, rng) for _ in range(20_000)]
    queues = [q for q, _ in draws]
    assert min(queues) >= 0.5 and max(queues) <= 3.5
    factors = sorted(p / 10.0 for _, p in draws)
    # Beyond e^(3 sigma) the lognormal alone leaves 0.13 %; 3x stragglers put ~1.5 % there.
    stragglers = sum(f > math.exp(3 * REALISTIC["spread"]) for f in factors)
    assert statistics.median(factors) == pytest.approx(1.0, abs=0.03)
    assert 0.008 <= stragglers / len(factors) <= 0.03
    # sigma of log(factor) among the non-stragglers is the configured spread
    logs = [math.log(f) for f in factors[: int(0.95 * len(factors))]]
    assert statistics.pstdev(logs) == pytest.approx(REALISTIC["spread"], rel=0.15)


def test_same_seed_same_times() -> None:
    config = EmulatorConfig(**REALISTIC)
    a = [server_times(config, 30.0, random.Random(3)) for _ in range(3)]
    assert a[0] == a[1] == a[2]


@pytest.mark.parametrize(
    "settings",
    [{"spread": -0.1}, {"queue_spread": -1}, {"straggler_rate": 1.5}, {"straggler_factor": 0.5}],
)
def test_bad_timing_settings_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        EmulatorConfig(**settings)  # type: ignore[arg-type]
