"""No behaviour change: GRPO, RLOO, token PPO and T-PPO (head and separate value, full and window learner) from
the shipped base models compute bitwise what they computed before the shared LM-RL layer existed.

The reference numbers (every metric of every update, a digest of the final parameters and optimiser state) were
recorded by ``tests/lm_golden.py`` on the code before the refactor. Bitwise equality is only meaningful with the
same jaxlib, XLA flags and CPU vector features as the recording; elsewhere the test is skipped with the reason
(re-record there with ``python tests/lm_golden.py --record`` from a commit known to be right).
"""
from __future__ import annotations

import json

import pytest

import lm_golden

GOLDEN = json.loads(lm_golden.PATH.read_text())


@pytest.mark.parametrize("name", lm_golden.NAMES)
def test_bitwise_equal_to_the_recording(name):
    reason = lm_golden.mismatch(GOLDEN["environment"])
    if reason is not None:
        pytest.skip(reason)
    lm_golden.assert_matches(GOLDEN["runs"][name], lm_golden.run(name))
