"""No behaviour change on the discrete path: PPO (MLP, normalised observations, LSTM) and robust PLR compute bitwise
what they computed before PPO learned continuous actions (``tests/ppo_golden.py``). Skipped, with the reason,
where the jaxlib, XLA flags or CPU vector features differ from the recording."""
from __future__ import annotations

import json

import pytest

import lm_golden
import ppo_golden

GOLDEN = json.loads(ppo_golden.PATH.read_text())


@pytest.mark.parametrize("name", ppo_golden.NAMES)
def test_bitwise_equal_to_the_recording(name):
    reason = lm_golden.mismatch(GOLDEN["environment"])
    if reason is not None:
        pytest.skip(reason)
    lm_golden.assert_matches(GOLDEN["runs"][name], ppo_golden.run(name))
