"""No behaviour change on the discrete path: PPO (MLP, normalised observations, LSTM) and robust PLR compute bitwise
what they computed before PPO learned continuous actions (``tests/ppo_golden.py``). Skipped, with the reason,
where the jaxlib, XLA flags or CPU vector features differ from the recording."""
from __future__ import annotations

import json

import numpy as np
import pytest

import ppo_golden
from lm_golden import environment

GOLDEN = json.loads(ppo_golden.PATH.read_text())


def _comparable() -> str | None:
    rec, now = GOLDEN["environment"], environment()
    for key in ("jaxlib", "machine", "cpu_features", "xla_flags"):
        if rec.get(key) != now.get(key):
            return f"recorded with {key}={rec.get(key)!r}, running with {now.get(key)!r}"
    return None


@pytest.mark.parametrize("name", ppo_golden.NAMES)
def test_bitwise_equal_to_the_recording(name):
    reason = _comparable()
    if reason is not None:
        pytest.skip(reason)
    want = GOLDEN["runs"][name]
    got = ppo_golden.run(name)
    missing = set(want["metrics"]) - set(got["metrics"])
    assert not missing, f"metric fields disappeared: {sorted(missing)}"
    for field, values in want["metrics"].items():
        np.testing.assert_array_equal(np.asarray(got["metrics"][field]), np.asarray(values), err_msg=field)
    assert got["state_sha256"] == want["state_sha256"], "final parameters / optimiser state differ"
