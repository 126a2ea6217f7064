"""Short GRPO, RLOO, token-PPO and T-PPO runs on fixed seeds, recorded before the LM-RL layer was refactored.

``tests/data/lm_golden.json`` holds, per run, every metric of every update and a SHA-256 of the final run
state's parameters and optimiser state. ``test_lm_golden.py`` re-runs them and demands bitwise equality, so a
refactor of the shared LM-RL layer cannot change what the algorithms compute. Re-record only for a deliberate
behaviour change (and say so in the commit): ``python tests/lm_golden.py --record [NAME ...]``.

Re-recorded since: ``tppo`` (T-PPO logs the scheduled learning rate instead of the constant one; the extra
metric changes how XLA:CPU compiles the update, and the parameters after three updates differ from the
original recording in the 7th significant digit: a compiled program's float results depend on the whole
graph, which is also why adding a semantically void ``where`` to the window's format check did the same);
every run on 2026-12-04 (issue #19: the Transformer runs its trunk on 2-D ``[B·T, d]`` rows and keeps its KV
cache as ``[L, B, H, S, D]``, which changes XLA:CPU's float order; metrics after three updates moved by at most
5e-4 relative, on the 2-core Intel Xeon with AMX the recording now names); ``grpo``, ``rloo`` and
``token_ppo`` again the same day (``lm.rollout`` prefills each prompt once for its G responses: a prefill of
B rows instead of B·G rounds differently; metrics within 1.2e-4 relative).

The runs use the test-suite's XLA flags (``conftest.py``); results are bitwise reproducible for the same
jaxlib on the same kind of CPU. The recording environment is stored beside the numbers.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from pathlib import Path

if __name__ == "__main__":  # the test-suite's XLA flags, before any JAX backend starts
    sys.path.insert(0, str(Path(__file__).parent))
    import conftest  # noqa: F401

import jax
import numpy as np

from jaxrl_self import envs
from jaxrl_self.algos import grpo, token_ppo, tppo

PATH = Path(__file__).parent / "data" / "lm_golden.json"
ADD = envs.make("addition", max_digits=5)  # addition-base's task
CHAIN = envs.make("chain", max_steps_cap=16)  # chain-base's task
SIZES = dict(num_updates=3, update_epochs=2, num_minibatches=2, learning_rate=1e-3)
ADD_RANGE = dict(min_difficulty=3, max_difficulty=4, base_model="addition-base")  # partly right: rewards vary


def _configs():
    return {
        "grpo": (grpo, ADD, grpo.Config(num_prompts=4, group_size=4, max_new_tokens=8, kl_coef=0.05, ent_coef=0.01,
                                        warmup_updates=2, format_penalty=0.1, **ADD_RANGE, **SIZES)),
        "rloo": (grpo, ADD, grpo.Config(num_prompts=4, group_size=4, max_new_tokens=8, advantage="rloo",
                                        loss_agg="seq_mean_token_mean", use_reference=False, **ADD_RANGE, **SIZES)),
        "token_ppo": (token_ppo, ADD, token_ppo.Config(num_prompts=4, group_size=2, max_new_tokens=8,
                                                       use_reference=True, kl_coef=0.05, warmup_updates=2,
                                                       **ADD_RANGE, **SIZES)),
        "tppo": (tppo, CHAIN, tppo.Config(num_slots=4, window=4, max_new_tokens=22, value_warmup_updates=1,
                                          base_model="chain-base", max_difficulty=8, **SIZES)),
        "tppo_separate_window": (tppo, CHAIN, tppo.Config(num_slots=4, window=4, max_new_tokens=22,
                                                          value_model="separate", learner="window",
                                                          bootstrap="exact", value_warmup_updates=1,
                                                          base_model="chain-base", max_difficulty=8, **SIZES)),
    }


NAMES = tuple(_configs())


def digest(tree) -> str:
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        a = np.asarray(jax.device_get(leaf))
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a = np.asarray(jax.random.key_data(leaf))
        h.update(str(a.dtype).encode() + str(a.shape).encode() + np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def run(name: str) -> dict:
    """Metrics (``{field: [updates][seeds] floats}``) and the state digest of one golden run (2 seeds vmapped)."""
    module, task, config = _configs()[name]
    train = module.make_train(config, task)
    keys = jax.random.split(jax.random.key(7), 2)
    state, metrics = jax.jit(jax.vmap(train))(keys)
    from jaxrl_self.run.metrics import flatten_tree

    fields = {f: np.asarray(v, np.float64).tolist() for f, v in flatten_tree(jax.device_get(metrics)).items()}
    learned = {"params": state.params, "opt_state": state.opt_state,
               "value_params": getattr(state, "value_params", None)}
    return {"metrics": fields, "state_sha256": digest(learned)}


def environment() -> dict:
    import jaxlib

    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "machine": platform.machine(),
            "cpu_features": cpu_features(), "xla_flags": os.environ.get("XLA_FLAGS", "")}


def mismatch(recorded: dict) -> str | None:
    """Why a recording made in environment ``recorded`` cannot be compared bitwise here (None: it can)."""
    now = environment()
    for key in ("jaxlib", "machine", "cpu_features", "xla_flags"):
        if recorded.get(key) != now.get(key):
            return f"recorded with {key}={recorded.get(key)!r}, running with {now.get(key)!r}"
    return None


def assert_matches(want: dict, got: dict) -> None:
    """Every recorded metric (new fields are additions, not changes) and the state digest, bitwise."""
    import numpy as np

    missing = set(want["metrics"]) - set(got["metrics"])
    assert not missing, f"metric fields disappeared: {sorted(missing)}"
    for field, values in want["metrics"].items():
        np.testing.assert_array_equal(np.asarray(got["metrics"][field]), np.asarray(values), err_msg=field)
    assert got["state_sha256"] == want["state_sha256"], "final parameters / optimiser state differ"


def cpu_features() -> list[str]:
    """The vector-instruction features XLA:CPU's code generation depends on (Linux; [] elsewhere)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    have = set(flags.split(":", 1)[1].split())
    return sorted(f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "amx_tile")
                  if f in have)


if __name__ == "__main__":
    if "--record" not in sys.argv:
        sys.exit("usage: python tests/lm_golden.py --record [NAME ...]   (names: re-record only these runs)")
    only = [a for a in sys.argv[1:] if a != "--record"] or list(NAMES)
    PATH.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(PATH.read_text())["runs"] if PATH.exists() else {}
    out = {"environment": environment(), "runs": {n: run(n) if n in only else old[n] for n in NAMES}}
    PATH.write_text(json.dumps(out, indent=1) + "\n")
    print(f"written {PATH}")
