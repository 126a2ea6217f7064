"""Where a GRPO step spends its time, and what fraction of the CPU's matrix rate each part reaches.

    python benchmarks/grpo_profile.py                        # d_model 64 and 256 -> results/grpo_profile.*
    python benchmarks/grpo_profile.py --before 4178094       # also the code of that commit, in the same job
    python benchmarks/grpo_profile.py --quick                # d_model 64, short timing (smoke test)

The step is ``benchmarks/grpo_throughput.py``'s (16 prompts x 8 completions of the addition task, <= 16 new
tokens, a reference model with beta 0.04, one epoch of one minibatch, random weights so every completion runs to
16 tokens), at the benchmark's model (2 layers, d_model 64, 4 heads, d_ff 256) and at a 4x wider one (d_model
256, d_ff 1024, 4 heads). Its parts, each jitted alone on the same data and timed (median of repetitions,
compile excluded):

* ``sample``: the prompts' prefill and 16 KV-cache decoding steps of the 128 rows (``lm.rollout``);
* ``reference``: the reference model's log-probs of the sampled tokens, one forward pass (``lm.reference_logp``);
* ``policy forward``: the loss alone (``lm.group_policy_loss``: one forward pass and the clipped surrogate);
* ``policy forward + backward``: its gradient;
* ``learn``: the gradient, global-norm clipping and the Adam step, as the update runs them (``lm.learn``);
* ``update``: the whole ``Train.update`` (problems, sampling, rewards, advantages, reference, learn), for the
  sum check, called as a training loop calls it (the state donated, replaced by the new one). Its minor page faults and system CPU time per call are counted too (``getrusage``), the cost the
  allocator setting of ``jaxrl_self._malloc`` removes.

FLOPs are those of ``grpo_throughput.step_flops``: a token forward costs ``f`` (weight matrices plus causal
attention); sampling, the reference and the policy forward do ``N·T·f`` each, the forward + backward ``3·N·T·f``,
the update ``5·N·T·f``. The CPU's best rate is ``grpo_throughput.matmul_rate`` on the step's own matrix shapes
(each product jitted alone, a generous ceiling); a part's fraction of the limit is its GFLOP/s (median time) over
that rate, and the update's is the fraction of the floor the benchmark reports.

Variants, each in its own worker process, one after the other under the timing lock: this tree (``after``), this
tree with ``JAXRL_SELF_NO_MALLOC_TUNING=1`` (``after, glibc malloc defaults``) and, with ``--before REV``, the
code of commit ``REV`` from a git worktree (``before``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

NAME = "grpo_profile"
WIDTHS = (64, 256)
PARTS = ("sample", "reference", "policy forward", "policy forward + backward", "learn", "update")


def model_for(d_model: int) -> dict:
    """The benchmark's model (grpo_throughput.MODEL) at width ``d_model`` (d_ff = 4 d_model, 4 heads)."""
    import grpo_throughput as G

    return {**G.MODEL, "d_model": d_model, "d_ff": 4 * d_model}


def worker(spec: dict) -> dict:
    import resource

    import jaxrl_self  # noqa: F401  (XLA guard and allocator setting first)
    import jax
    import jax.numpy as jnp

    import grpo_throughput as G
    from jaxrl_self import lm
    from jaxrl_self.algos import grpo
    from jaxrl_self.envs.tokens import AdditionTask
    from jaxrl_self.nets.transformer import TransformerConfig
    from jaxrl_self.rl import group

    task = AdditionTask(max_digits=spec["max_digits"])
    m = spec["model"]
    R, B, Gs = spec["max_new_tokens"], spec["num_prompts"], spec["group_size"]
    model = TransformerConfig(vocab_size=m["vocab_size"], num_layers=m["num_layers"], d_model=m["d_model"],
                              num_heads=m["num_heads"], d_ff=m["d_ff"], max_len=task.prompt_len + R)
    config = grpo.Config(num_updates=1, num_prompts=B, group_size=Gs, max_new_tokens=R, model=model,
                         learning_rate=spec["learning_rate"], kl_coef=spec["beta"], use_reference=True,
                         clip_eps=0.2, max_grad_norm=1.0, temperature=1.0)
    train = grpo.make_train(config, task)
    state = jax.jit(train.init)(jax.random.key(spec["seed"]))
    policy = lm.load_policy(config, task, owner="grpo_profile")
    mc, layout = policy.model_config, policy.prompt_layout
    source = lm.problem_source(task, lm.task_params_for(config, task, None), None)
    _, drawn = source.draw(state.problems, jax.random.key(1), B)
    tx = lm.make_optimizer(config)

    def loss(p, batch):
        return lm.group_policy_loss(config, mc, p, batch)[0]

    def sample(p, k):
        return lm.rollout(k, p, mc, drawn.problems, Gs, R, 1.0, prompt_layout=layout)

    ro = jax.jit(sample)(state.params, jax.random.key(2))
    ref = jax.jit(lambda p, r: lm.reference_logp(p, mc, r))(state.ref_params, ro)
    rewards, _ = lm.compute_rewards(jax.random.key(3), grpo.verifier_reward(task, 0.0), ro.problem, ro.responses,
                                    ro.mask, Gs, state.reward_extras)
    batch = lm.make_batch(ro, group.group_advantages(rewards, config.advantage, eps=config.adv_eps,
                                                     ddof=config.std_ddof), ref)
    reps, min_s = spec["reps"], spec["min_rep_s"]

    def bench(fn, *args) -> dict:
        return C.jit_timed(fn, *args, reps=reps, min_rep_s=min_s)

    parts = {
        "sample": bench(sample, state.params, jax.random.key(2)),
        "reference": bench(lambda p, r: lm.reference_logp(p, mc, r), state.ref_params, ro),
        "policy forward": bench(loss, state.params, batch),
        "policy forward + backward": bench(jax.grad(loss), state.params, batch),
        "learn": bench(lambda p, o, b: lm.learn(jax.random.key(4), config, lambda q, mb: lm.group_policy_loss(
            config, mc, q, mb), tx, p, o, b)[:2], state.params, state.opt_state, batch),
    }
    # the whole update as a training loop calls it: the state donated and replaced by the new one each call
    update, lower_s, compile_s = C.compile_timed(lambda s: train.update(s)[0], jax.tree.map(jnp.copy, state),
                                                 donate_argnums=(0,))
    carry = [jax.tree.map(jnp.copy, state)]

    def step():
        carry[0] = update(carry[0])
        return carry[0]

    timed = C.time_calls(step, reps=reps, min_rep_s=min_s)
    parts["update"] = {"median_s": timed.median_s, "samples_s": timed.seconds_per_call,
                       "compile_s": lower_s + compile_s}
    # its page faults and system time, per call
    calls = max(5, int(2.0 / timed.median_s))
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(calls):
        jax.block_until_ready(step())
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    prompt_len = int(task.prompt_len)
    work = G.step_flops(spec, prompt_len)
    n_t, f = work["sequences"] * work["tokens_per_sequence"], work["flops_per_token_forward"]
    flops = {"sample": n_t * f, "reference": n_t * f, "policy forward": n_t * f,
             "policy forward + backward": 3 * n_t * f, "learn": 3 * n_t * f, "update": 5 * n_t * f}
    rates = G.matmul_rate(spec, prompt_len)
    for name, row in parts.items():
        row["gflops"] = flops[name] / row["median_s"] / 1e9
        row["fraction_of_best"] = row["gflops"] / rates["best"]
    return {"worker": C.worker_info(("jax", "jaxlib", "flax", "optax", "numpy")), "parts": parts,
            "malloc_tuned": bool(getattr(jaxrl_self, "MALLOC_TUNED", False)),
            "per_update": {"minor_faults": (r1.ru_minflt - r0.ru_minflt) / calls,
                           "system_s": (r1.ru_stime - r0.ru_stime) / calls,
                           "user_s": (r1.ru_utime - r0.ru_utime) / calls, "calls": calls},
            "work": work, "rates_gflops": rates, "floor_s": work["flops"] / (rates["best"] * 1e9)}


def markdown(data: dict) -> str:
    m = data["machine"]
    lines = ["# Where a GRPO step spends its time", "",
             f"{m['cpu_model']}, {m['cpus_usable']} usable cores, load average {m['loadavg']} at the start "
             f"(git {str(m.get('git_commit'))[:8]}{' dirty' if m.get('git_dirty') else ''}), {data['created']}. "
             f"Step: {data['settings']['num_prompts']} prompts x {data['settings']['group_size']} completions, "
             f"<= {data['settings']['max_new_tokens']} new tokens, reference model, 1 epoch of 1 minibatch. "
             "Method: `benchmarks/grpo_profile.py` (module docstring).", ""]
    variants = list(data["variants"])
    for width in data["widths"]:
        rows = {v: data["rows"][v][str(width)] for v in variants}
        after = rows["after"]
        mod = after["model"]
        lines += [f"## d_model {width} ({mod['num_layers']} layers, {mod['num_heads']} heads, d_ff {mod['d_ff']})", ""]
        head = "| part | " + " | ".join(f"{v} (ms)" for v in variants)
        head += " | after: share of the update | after: GFLOP/s | after: fraction of the best rate |"
        if "before" in rows:
            head += " after / before (speed) |"
        lines += [head, "|---|" + "---:|" * (len(variants) + 3 + ("before" in rows))]
        update = after["parts"]["update"]["median_s"]
        for name in PARTS:
            p = after["parts"][name]
            cells = " | ".join(f"{rows[v]['parts'][name]['median_s'] * 1e3:.1f}" for v in variants)
            share = "-" if name in ("update", "policy forward + backward") else f"{p['median_s'] / update:.0%}"
            line = f"| {name} | {cells} | {share} | {p['gflops']:.0f} | {p['fraction_of_best']:.0%} |"
            if "before" in rows:
                line += f" {C.fmt_ratio(rows['before']['parts'][name]['median_s'] / p['median_s'])} |"
            lines.append(line)
        faults = "; ".join(f"{v}: {rows[v]['per_update']['minor_faults']:,.0f} minor page faults and "
                           f"{rows[v]['per_update']['system_s'] * 1e3:.1f} ms system CPU" for v in variants)
        lines += ["", f"Per update call: {faults}.",
                  "", f"Floor of the step: {after['work']['flops'] / 1e9:.2f} GFLOP at the best rate "
                  f"{after['rates_gflops']['best']:.0f} GFLOP/s = {after['floor_s'] * 1e3:.1f} ms; the update runs at "
                  f"{after['parts']['update']['fraction_of_best']:.0%} of it (best rates on the step's shapes, "
                  "GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in after["rates_gflops"].items() if k != "best")
                  + ").", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    import grpo_throughput as G

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--widths", type=int, nargs="*", default=None, help=f"d_model values (default {WIDTHS})")
    p.add_argument("--before", default=None, help="also profile the code of this git commit, in the same job")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--min-rep-s", type=float, default=0.5)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        C.emit_result(worker(json.loads(args.worker)))
        return
    widths = args.widths or ([64] if args.quick else list(WIDTHS))
    base = {k: G.FULL[k] for k in ("num_prompts", "group_size", "max_new_tokens", "max_digits")}
    settings = {**base, "beta": 0.04, "learning_rate": 1e-6, "seed": 0,
                "reps": 2 if args.quick else args.reps, "min_rep_s": 0.1 if args.quick else args.min_rep_s}
    env = C.worker_env()
    env.pop("JAXRL_SELF_NO_MALLOC_TUNING", None)
    variants = {"after": (env, None), "after, glibc malloc defaults": (dict(env, JAXRL_SELF_NO_MALLOC_TUNING="1"), None)}
    rows: dict = {}
    data = {"benchmark": NAME, "created": C.utc_now(), "machine": C.machine_info(), "settings": settings,
            "widths": widths, "method": __doc__}

    def run_all(before_folder=None):
        if before_folder is not None:
            variants["before"] = (C.checkout_env(env, before_folder), before_folder)
        for name, (venv, _) in variants.items():
            rows[name] = {}
            for width in widths:
                spec = {**settings, "model": model_for(width)}
                C.log(f"[{NAME}] {name}, d_model {width} ...")
                with C.timing_lock(f"{NAME} {name} d{width}") as lock:
                    r = C.run_worker(sys.executable, Path(__file__).resolve(), ["--worker", json.dumps(spec)],
                                     env=venv, timeout=3600)
                r["timing"], r["model"] = lock, spec["model"]
                rows[name][str(width)] = r

    if args.before:
        with C.checkout(args.before) as (folder, sha):
            data["before_commit"] = sha
            run_all(folder)
    else:
        run_all()
    data["variants"], data["rows"] = list(variants), rows
    C.publish(NAME, NAME + (".quick" if args.quick else ""), data, markdown(data))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
