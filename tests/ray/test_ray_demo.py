"""`make demo DEMO_ARGS="--engine ray"`: the demo's own Ray cluster, in its own network
namespace with the three daemons, trains the example on two Ray Train workers."""

from __future__ import annotations

import pytest

from p2pdata.training.ray_local import unavailable
from tests.test_demo import check_steps, run_demo

pytestmark = [pytest.mark.tf, pytest.mark.ray]


def test_demo_trains_on_ray() -> None:
    if unavailable():
        pytest.skip(unavailable())
    output = run_demo("--engine", "ray")
    check_steps(output)
    assert "starting a two-node Ray cluster in a network namespace of its own" in output
    assert "Ray at 127.0.0.1:6379 in network namespace p2pray-" in output
    assert ": 2 Ray Train workers" in output
