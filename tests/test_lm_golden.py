"""No behaviour change: GRPO, RLOO, token PPO and T-PPO (head and separate value, full and window learner) from
the shipped base models compute bitwise what they computed before the shared LM-RL layer existed.

The reference numbers (every metric of every update, a digest of the final parameters and optimiser state) were
recorded by ``tests/lm_golden.py`` on the code before the refactor. Bitwise equality is only meaningful with the
same jaxlib, XLA flags and CPU vector features as the recording; elsewhere the test is skipped with the reason
(re-record there with ``python tests/lm_golden.py --record`` from a commit known to be right).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import lm_golden

GOLDEN = json.loads(lm_golden.PATH.read_text())


def _comparable() -> str | None:
    rec, now = GOLDEN["environment"], lm_golden.environment()
    for key in ("jaxlib", "machine", "cpu_features", "xla_flags"):
        if rec.get(key) != now.get(key):
            return f"recorded with {key}={rec.get(key)!r}, running with {now.get(key)!r}"
    return None


@pytest.mark.parametrize("name", lm_golden.NAMES)
def test_bitwise_equal_to_the_recording(name):
    reason = _comparable()
    if reason is not None:
        pytest.skip(reason)
    want = GOLDEN["runs"][name]
    got = lm_golden.run(name)
    missing = set(want["metrics"]) - set(got["metrics"])
    assert not missing, f"metric fields disappeared: {sorted(missing)}"  # new fields are additions, not changes
    for field, values in want["metrics"].items():
        np.testing.assert_array_equal(np.asarray(got["metrics"][field]), np.asarray(values), err_msg=field)
    assert got["state_sha256"] == want["state_sha256"], "final parameters / optimiser state differ"
