"""Short discrete PPO and curriculum runs on fixed seeds, recorded before PPO learned continuous actions.

``tests/data/ppo_golden.json`` holds, per run, every metric of every update and a SHA-256 of the final parameters
and optimiser state; ``test_ppo_golden.py`` re-runs them and demands bitwise equality, so adding Box actions,
reward normalisation or anything else to :mod:`jaxrl_self.algos.ppo` cannot change what the discrete path
computes. Bitwise equality needs the recording's jaxlib, XLA flags and CPU vector features (see
``lm_golden.py``); elsewhere the test is skipped with the reason. Re-record only for a deliberate behaviour change
(and say so in the commit): ``python tests/ppo_golden.py --record [NAME ...]``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

if __name__ == "__main__":  # the test-suite's XLA flags, before any JAX backend starts
    sys.path.insert(0, str(Path(__file__).parent))
    import conftest  # noqa: F401

import jax
import numpy as np

from lm_golden import digest, environment

from jaxrl_self import envs
from jaxrl_self.algos import ppo
from jaxrl_self.curricula import robust_plr

PATH = Path(__file__).parent / "data" / "ppo_golden.json"
_PPO = dict(total_timesteps=4 * 32 * 3, num_envs=4, num_steps=32, update_epochs=2, num_minibatches=2)


def _configs():
    plr = robust_plr.Config()
    return {
        "ppo_mlp": (ppo, envs.make("cartpole"), ppo.Config(**_PPO)),
        "ppo_mlp_normalized": (ppo, envs.make("cartpole"), ppo.Config(normalize_obs=True, anneal_lr=False,
                                                                        normalize_advantages=False, **_PPO)),
        "ppo_lstm": (ppo, envs.make("probe-memory"), ppo.Config(network="lstm", lstm_features=16, **_PPO)),
        "robust_plr": (robust_plr, envs.make("maze"), plr.replace(
            ppo=plr.ppo.replace(total_timesteps=4 * 16 * 4, num_envs=4, num_steps=16, lstm_features=16,
                                update_epochs=2),
            sampler=plr.sampler.replace(capacity=16, minimum_fill_ratio=0.25), eval_every=0)),
    }


NAMES = tuple(_configs())


def run(name: str) -> dict:
    """Metrics (``{field: [updates][seeds] floats}``) and the state digest of one golden run (2 seeds vmapped)."""
    module, env, config = _configs()[name]
    train = module.make_train(config, env)
    keys = jax.random.split(jax.random.key(11), 2)
    state, metrics = jax.jit(jax.vmap(train))(keys)
    from jaxrl_self.run.metrics import flatten_tree

    fields = {f: np.asarray(v, np.float64).tolist() for f, v in flatten_tree(jax.device_get(metrics)).items()}
    return {"metrics": fields, "state_sha256": digest({"params": state.params, "opt_state": state.opt_state})}


if __name__ == "__main__":
    if "--record" not in sys.argv:
        sys.exit("usage: python tests/ppo_golden.py --record [NAME ...]   (names: re-record only these runs)")
    only = [a for a in sys.argv[1:] if a != "--record"] or list(NAMES)
    PATH.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(PATH.read_text())["runs"] if PATH.exists() else {}
    out = {"environment": environment(), "runs": {n: run(n) if n in only else old[n] for n in NAMES}}
    PATH.write_text(json.dumps(out, indent=1) + "\n")
    print(f"written {PATH}")
