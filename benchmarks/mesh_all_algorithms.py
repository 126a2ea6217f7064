"""Every registered algorithm on a device mesh against the same run on one device.

    python benchmarks/mesh_all_algorithms.py      # -> benchmarks/results/mesh_all_algorithms.{json,md} (~8 min, 2 CPUs)

tests/test_mesh.py checks PPO, robust PLR and GRPO on 2 and 4 devices in every test run. This script, too slow for
the suite, runs the tiny config of *every* registered algorithm (tests/tiny_configs.py) once unsharded and once
with ``--mesh envs=2`` (2 forced CPU devices, in a worker process) and records the largest absolute parameter
difference. Float order is all that may differ, so the figures should sit at float32 rounding (~1e-8 to 1e-5
after a few updates).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import _common as C  # noqa: E402


def worker() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import jax
    import numpy as np

    import jaxrl_self  # noqa: F401
    from jaxrl_self import algos
    from jaxrl_self.run.runner import Runner, RunOptions
    from tiny_configs import tiny_cell

    rows = []
    for name in sorted(algos.names()):
        module = algos.get(name)
        kinds = set(getattr(module, "ENV_KINDS", ()))
        env_name = "addition" if ("task" in kinds or "addition" in kinds) else "maze" if "level" in kinds else "cartpole"
        t = time.perf_counter()
        cfg, env = tiny_cell(name, env_name)
        train = module.make_train(cfg, env)
        runs = {mesh: Runner(train, RunOptions(seeds=1, chunks=1, progress=False, keep_checkpoints=0, mesh=mesh),
                             run_dir=False, compiler_options={"xla_backend_optimization_level": 0}).run()
                for mesh in (None, "envs=2")}
        a, b = (jax.tree.leaves(jax.device_get(runs[m].states.params)) for m in (None, "envs=2"))
        diff = max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))) for x, y in zip(a, b))
        scale = max(float(np.max(np.abs(np.asarray(x)))) for x in a)
        rows.append({"algo": name, "env": env_name, "max_abs_param_diff": diff, "max_abs_param": scale,
                     "bitwise": diff == 0.0, "seconds": round(time.perf_counter() - t, 1)})
        C.log(f"[mesh] {name} on {env_name}: max |dparams| = {diff:.2e}")
    C.emit_result({"rows": rows, "worker": C.worker_info()})


def main() -> None:
    if "--worker" in sys.argv:
        return worker()
    start = time.perf_counter()
    env = C.worker_env("cpu")
    env["XLA_FLAGS"] = (env["XLA_FLAGS"] + " --xla_force_host_platform_device_count=2").strip()
    result = C.run_worker(sys.executable, __file__, ["--worker"], env=env, timeout=3600)
    lines = ["# Every algorithm on a 2-device mesh (envs=2) against one device", "",
             f"Measured {C.utc_now()} by `benchmarks/mesh_all_algorithms.py`: each registered algorithm's tiny config "
             "(tests/tiny_configs.py), seed 0, once on one device and once with `--mesh envs=2` on 2 forced CPU "
             "devices; the largest absolute difference of any parameter after the run.", "",
             "| algorithm | env | max abs param diff | max abs param | bitwise |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['algo']} | {r['env']} | {r['max_abs_param_diff']:.2e} | {r['max_abs_param']:.3g} | "
                     f"{'yes' if r['bitwise'] else 'no'} |")
    data = {"benchmark": "mesh_all_algorithms", "machine": C.machine_info(), **result}
    C.publish("mesh", "mesh_all_algorithms", data, "\n".join(lines), round(time.perf_counter() - start, 1))


if __name__ == "__main__":
    main()
