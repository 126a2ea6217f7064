"""GRPO training throughput: jaxrl_self's GRPO step vs Hugging Face TRL's ``GRPOTrainer`` on PyTorch CPU and
google-tunix's ``GRPOLearner`` (JAX).

    python benchmarks/grpo_throughput.py            # full run -> benchmarks/results/grpo_throughput.{json,md}
    python benchmarks/grpo_throughput.py --quick    # smoke run -> grpo_throughput.quick.{json,md}
    python benchmarks/grpo_throughput.py --peers tunix --output grpo_vs_tunix   # ours and tunix only
    python benchmarks/grpo_throughput.py --d-model 256 --output grpo_throughput_wide   # the 4x wider model

Run the full measurement on a quiet machine (nothing else running): both sides use every core.

What one GRPO *step* is, on both sides (the same work): ``B`` prompts of the addition task (operands of 1..D
digits, reversed answers, our token format), ``G`` sampled completions per prompt (temperature 1, no top-k/top-p,
at most ``R`` new tokens, stop at EOS) with a KV cache, the verifier reward (1/0) per completion, group-normalised
advantages, reference-model log-probs (KL coefficient ``β`` with the k3 estimator), one forward + backward pass of
the token-mean clipped surrogate over the ``B·G`` completions, gradient clipping and one Adam step.

* **ours**: ``jaxrl_self.algos.grpo.make_train(Config(num_prompts=B, group_size=G, max_new_tokens=R,
  kl_coef=β, ...), AdditionTask(max_digits=D))``; the Transformer (pre-norm RMSNorm, RoPE, GELU MLP of width
  ``d_ff``, tied embeddings) is initialised from its config. ``train.update`` is compiled ahead of time (compile
  time reported apart, the state argument donated as a training loop would) and called once per step, blocking
  on the result (``per step``); the same steps run as one program (``train.run`` over ``K`` updates, a
  ``lax.scan``) are reported as ``scanned``.
* **TRL**: ``trl.GRPOTrainer`` (``loss_type="dapo"``: token mean over the batch, ``scale_rewards="group"``,
  ``beta=β``, ``num_iterations=1``, ``per_device_train_batch_size=B·G``, ``num_generations=G``) on a
  ``LlamaForCausalLM`` built from a ``LlamaConfig`` of the same shape (layers, width, heads, vocabulary, RMSNorm,
  RoPE, tied embeddings; its SwiGLU MLP has three matrices, so its intermediate width is ``round(2/3 · d_ff)`` to
  match our MLP's parameters and FLOPs), saved to a temporary folder and loaded from there (TRL builds its
  reference model from the same folder: nothing is downloaded); a word-level tokenizer over our 64-token
  vocabulary (``tokenizers``); the reward function parses the completion's token ids exactly like our verifier.
  Timing: a ``TrainerCallback`` stamps the end of every optimizer step; steady state = the steps after the
  warm-up ones.

**Trained tokens** are the completion tokens that enter the loss (up to and including EOS), counted per step by
each side (ours: the response mask; TRL: the ``completion_ids`` its reward function receives). Throughput =
trained tokens / wall seconds over the measured steps; ``s/step`` is the median step time. Both models start
from random weights (so most completions run to ``R`` tokens on both sides) and use a tiny learning rate, so the
work per step stays the same while it is measured.

* **tunix**: ``google-tunix`` 0.1.7 (same jax/flax versions as ours) through the peer script
  ``../shared/peers/tunix_grpo_cpu.py`` (its vanilla KV-cache sampler, a Llama from a config with the same
  shape and the SwiGLU width rule above, a word-level tokenizer over our vocabulary, the same reward, beta, k3
  estimator, token-mean loss, clip and Adam), in ``benchmarks/.venvs/tunix``. Its median seconds per step are
  compared with ours per call (``tunix_over_ours_s_per_step``).

Each side runs in its own subprocess, one after the other (never at once): ours with this interpreter, TRL in
``benchmarks/.venvs/trl`` (``torch==2.13.0`` CPU wheel first, then ``trl``/``transformers``/``accelerate``/
``datasets``, pinned below), built once.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402  (stdlib only at import time)

NAME = "grpo_throughput"
#: The TRL venv. torch first: the CPU wheel on this machine; letting trl pull torch would fetch a CUDA build.
TRL_REQUIREMENTS = ("torch==2.13.0", "trl==1.13.0", "transformers==5.17.0", "accelerate==1.15.0", "datasets==5.0.1")
TRL_PACKAGES = ("torch", "trl", "transformers", "accelerate", "datasets", "tokenizers", "numpy")
#: google-tunix, Google's JAX post-training library (same jax/flax as ours), run through the peer script in
#: ../shared/peers/tunix_grpo_cpu.py (its own venv).
TUNIX_REQUIREMENTS = ("google-tunix==0.1.7",)
TUNIX_SCRIPT = C.REPO_ROOT.parent / "shared" / "peers" / "tunix_grpo_cpu.py"
OURS_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "jaxrl-self")
AIM = 10.0  # ours / TRL, trained tokens per second

FULL = dict(num_prompts=16, group_size=8, max_new_tokens=16, max_digits=4, warmup=3, steps=20, scan_reps=3)
QUICK = dict(num_prompts=4, group_size=4, max_new_tokens=8, max_digits=2, warmup=1, steps=3, scan_reps=1)
MODEL = dict(num_layers=2, d_model=64, num_heads=4, d_ff=256, vocab_size=64)


# ================================================================================================ ours
def worker_ours(spec: dict[str, Any]) -> dict[str, Any]:
    import jaxrl_self  # noqa: F401  (XLA guard first)
    import jax
    import numpy as np

    from jaxrl_self.algos import grpo
    from jaxrl_self.core.sequence import VOCAB
    from jaxrl_self.envs.tokens import AdditionTask
    from jaxrl_self.nets.transformer import TransformerConfig

    task = AdditionTask(max_digits=spec["max_digits"])
    m = spec["model"]
    model = TransformerConfig(vocab_size=m["vocab_size"], num_layers=m["num_layers"], d_model=m["d_model"],
                              num_heads=m["num_heads"], d_ff=m["d_ff"],
                              max_len=task.prompt_len + spec["max_new_tokens"])
    steps, warmup = spec["steps"], spec["warmup"]
    config = grpo.Config(num_updates=steps, num_prompts=spec["num_prompts"], group_size=spec["group_size"],
                         max_new_tokens=spec["max_new_tokens"], model=model, learning_rate=spec["learning_rate"],
                         kl_coef=spec["beta"], use_reference=spec["beta"] > 0, clip_eps=0.2, max_grad_norm=1.0,
                         temperature=1.0)
    train = grpo.make_train(config, task)
    info = C.worker_info(OURS_PACKAGES)
    key = jax.random.key(spec["seed"])
    init, _, init_compile = C.compile_timed(train.init, key)
    state = jax.block_until_ready(init(key))
    # the state is donated, as a training loop calling the step would (its buffers are reused for the new state)
    update, lower_s, compile_s = C.compile_timed(train.update, state, donate_argnums=(0,))
    C.log(f"  [ours] update compiled in {lower_s + compile_s:.1f} s")

    def tokens_of(metrics) -> int:
        return int(round(float(metrics.response_length) * config.batch_size))

    for _ in range(warmup):
        state, metrics = jax.block_until_ready(update(state))
    step_s, step_tokens = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = jax.block_until_ready(update(state))
        step_s.append(time.perf_counter() - t0)
        step_tokens.append(tokens_of(metrics))
    C.log(f"  [ours] per step: median {statistics.median(step_s) * 1e3:.1f} ms, "
          f"{sum(step_tokens) / sum(step_s):,.0f} tokens/s")

    # the same updates as one program: K = steps updates in a lax.scan
    run, _, scan_compile = C.compile_timed(lambda s: train.run(s, steps), state, donate_argnums=(0,))
    state = jax.block_until_ready(run(state))[0]  # warm-up
    scan_s, scan_tokens = [], []
    for _ in range(spec["scan_reps"]):
        t0 = time.perf_counter()
        state, metrics = jax.block_until_ready(run(state))
        scan_s.append(time.perf_counter() - t0)
        scan_tokens.append(int(round(float(np.sum(np.asarray(metrics.response_length))) * config.batch_size)))
    return {
        "worker": info,
        "description": f"jaxrl_self.algos.grpo (update per call, and {steps} updates per lax.scan program)",
        "vocab": list(VOCAB.tokens),
        "params": int(sum(x.size for x in jax.tree.leaves(state.params))),
        "compile_s": {"init": init_compile, "update_lower": lower_s, "update_compile": compile_s,
                      "scan_compile": scan_compile},
        "per_step": _summary(step_s, step_tokens),
        "scanned": {"seconds_per_step": [s / steps for s in scan_s], "tokens": scan_tokens,
                    "tokens_per_s": sum(scan_tokens) / sum(scan_s),
                    "median_s_per_step": statistics.median(scan_s) / steps},
        "final_accuracy": float(metrics.accuracy[-1]),
        "threads": os.cpu_count(),
        "floor": {"work": step_flops(spec, task.prompt_len), "matmul_gflops": matmul_rate(spec, task.prompt_len)},
    }


def step_flops(spec: dict[str, Any], prompt_len: int) -> dict[str, float]:
    """Matrix-multiply FLOPs of the least work one GRPO step needs, whoever implements it.

    With ``N = B·G`` sequences of ``T = prompt_len + R`` tokens (random weights: completions run to ``R``), a
    token's forward pass through ``L`` layers of width ``d`` costs ``f = 2·(L·(4d² + 2d·d_ff) + d·V)`` FLOPs in
    its weight matrices plus ``4·L·d·t̄`` in attention (``t̄ = T/2`` keys on average under the causal mask).
    A step = sampling (``N·T`` token forwards with a KV cache) + the reference model's forward (``N·T``) + the
    policy's forward and backward (``3·N·T``: the backward costs twice the forward) = ``5·N·T·f``. Everything
    else (softmax, norms, sampling, the optimiser) is extra, so this is a lower bound on the work.
    """
    m = spec["model"]
    n, t = spec["num_prompts"] * spec["group_size"], prompt_len + spec["max_new_tokens"]
    d, layers = m["d_model"], m["num_layers"]
    per_token = 2 * (layers * (4 * d * d + 2 * d * m["d_ff"]) + d * m["vocab_size"]) + 4 * layers * d * t / 2
    return {"sequences": n, "tokens_per_sequence": t, "flops_per_token_forward": per_token,
            "token_forwards": 5 * n * t, "flops": 5 * n * t * per_token}


def matmul_rate(spec: dict[str, Any], prompt_len: int, min_s: float = 0.5) -> dict[str, float]:
    """Best float32 GFLOP/s this machine reaches (XLA:CPU, all cores) on the step's own matrix shapes: the
    scoring pass's ``(N·T, d) x (d, d_ff)`` and ``(N·T, d) x (d, 3d)``, and the decoding step's ``(N, d) x
    (d, d_ff)``. Each product is jitted alone and repeated for ``min_s`` seconds (a generous ceiling: a real step
    also pays for everything between the products)."""
    import jax
    import jax.numpy as jnp

    m = spec["model"]
    n, t, d, ff = spec["num_prompts"] * spec["group_size"], prompt_len + spec["max_new_tokens"], m["d_model"], m["d_ff"]
    out = {}
    for name, (rows, k, cols) in {"score_mlp": (n * t, d, ff), "score_qkv": (n * t, d, 3 * d),
                                  "decode_mlp": (n, d, ff)}.items():
        x = jax.random.normal(jax.random.key(0), (rows, k), jnp.float32)
        w = jax.random.normal(jax.random.key(1), (k, cols), jnp.float32)
        f = jax.jit(lambda a, b: a @ b)
        jax.block_until_ready(f(x, w))
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < min_s:
            jax.block_until_ready(f(x, w))
            reps += 1
        out[name] = 2 * rows * k * cols * reps / (time.perf_counter() - t0) / 1e9
    out["best"] = max(out.values())
    return out


def _summary(step_s: list[float], step_tokens: list[int]) -> dict[str, Any]:
    return {"seconds": step_s, "tokens": step_tokens, "median_s_per_step": statistics.median(step_s),
            "mean_s_per_step": statistics.fmean(step_s), "tokens_per_s": sum(step_tokens) / sum(step_s),
            "mean_tokens_per_step": statistics.fmean(step_tokens)}


# ================================================================================================ TRL
def _addition_problems(vocab: list[str], n: int, max_digits: int, seed: int) -> list[dict[str, str]]:
    """Our AdditionTask's format in plain Python: ``<bos> <q> a + b = </q>``; answer = sum, reversed digits."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        d = rng.randint(1, max_digits)
        lo = 0 if d == 1 else 10 ** (d - 1)
        a, b = rng.randint(lo, 10 ** d - 1), rng.randint(lo, 10 ** d - 1)
        prompt = " ".join(["<bos>", "<q>", *str(a), "+", *str(b), "=", "</q>"])
        out.append({"prompt": prompt, "answer": " ".join(reversed(str(a + b)))})
    assert all(t in vocab for p in out for t in p["prompt"].split())
    return out


def worker_trl(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    info = {"python": sys.version.split()[0], "executable": sys.executable,
            "versions": C.package_versions(TRL_PACKAGES), "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads()}
    vocab = spec["vocab"]
    ids = {t: i for i, t in enumerate(vocab)}
    tok = Tokenizer(models.WordLevel(vocab=ids, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                        pad_token="<pad>", unk_token="<pad>")
    m = spec["model"]
    torch.manual_seed(spec["seed"])
    prompt_len = 2 * spec["max_digits"] + 5
    cfg = LlamaConfig(vocab_size=m["vocab_size"], hidden_size=m["d_model"], num_hidden_layers=m["num_layers"],
                      num_attention_heads=m["num_heads"], num_key_value_heads=m["num_heads"],
                      intermediate_size=round(2 * m["d_ff"] / 3), max_position_embeddings=prompt_len + spec["max_new_tokens"],
                      rms_norm_eps=1e-6, tie_word_embeddings=True, attention_bias=False, mlp_bias=False,
                      bos_token_id=ids["<bos>"], eos_token_id=ids["<eos>"], pad_token_id=ids["<pad>"])
    model = LlamaForCausalLM(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    B, G, steps, warmup = spec["num_prompts"], spec["group_size"], spec["steps"], spec["warmup"]
    problems = _addition_problems(vocab, B * (steps + warmup + 2), spec["max_digits"], spec["seed"])
    dataset = Dataset.from_list(problems)
    eos, a_open, a_close = ids["<eos>"], ids["<a>"], ids["</a>"]
    step_tokens: list[int] = []

    def verifier(prompts, completions, completion_ids, answer, **kwargs):
        """1.0 if the tokens between the first <a> and the next </a>/<eos> equal the answer (our verifier)."""
        step_tokens.append(sum(len(c) for c in completion_ids))
        rewards = []
        for cids, ans in zip(completion_ids, answer):
            cids = list(cids)
            ok = False
            if a_open in cids:
                start = cids.index(a_open) + 1
                stop = next((i for i in range(start, len(cids)) if cids[i] in (a_close, eos)), None)
                ok = stop is not None and stop > start and [vocab[i] for i in cids[start:stop]] == ans.split()
            rewards.append(1.0 if ok else 0.0)
        return rewards

    stamps: list[float] = []

    class Timer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = os.path.join(tmp, "tiny-llama")
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        args = GRPOConfig(
            output_dir=os.path.join(tmp, "out"), per_device_train_batch_size=B * G, num_generations=G,
            gradient_accumulation_steps=1, max_completion_length=spec["max_new_tokens"],
            learning_rate=spec["learning_rate"], beta=spec["beta"], epsilon=0.2, num_iterations=1,
            loss_type="dapo", scale_rewards="group", temperature=1.0, top_p=1.0, top_k=0, max_grad_norm=1.0,
            lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_steps=warmup + steps,
            logging_steps=10**6, save_strategy="no", report_to=[], use_cpu=True, bf16=False, fp16=False,
            dataloader_num_workers=0, seed=spec["seed"], disable_tqdm=True, log_completions=False,
        )
        trainer = GRPOTrainer(model=model_dir, reward_funcs=[verifier], args=args, train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[Timer()])
        t0 = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - t0
    step_s = [b - a for a, b in zip(stamps[:-1], stamps[1:])]
    if len(step_s) != warmup + steps or len(step_tokens) != warmup + steps:
        raise RuntimeError(f"expected {warmup + steps} steps, timed {len(step_s)}, rewarded {len(step_tokens)}")
    C.log(f"  [trl] per step: median {statistics.median(step_s[warmup:]) * 1e3:.1f} ms, "
          f"{sum(step_tokens[warmup:]) / sum(step_s[warmup:]):,.0f} tokens/s")
    return {
        "worker": info,
        "description": "trl.GRPOTrainer on LlamaForCausalLM(LlamaConfig(...)), PyTorch CPU",
        "params": int(n_params),
        "llama_intermediate_size": cfg.intermediate_size,
        "warmup_s": sum(step_s[:warmup]),
        "train_call_s": total,
        "per_step": _summary(step_s[warmup:], step_tokens[warmup:]),
    }


# ================================================================================================ orchestrator
def run_tunix(python: Path | str, spec: dict[str, Any], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """google-tunix's GRPOLearner on the same step (``TUNIX_SCRIPT``, its own venv): the JSON line it prints."""
    import subprocess

    m = spec["model"]
    cmd = [str(python), str(TUNIX_SCRIPT), "--steps", spec["steps"], "--warmup", spec["warmup"],
           "--num-prompts", spec["num_prompts"], "--group-size", spec["group_size"],
           "--max-new-tokens", spec["max_new_tokens"], "--max-digits", spec["max_digits"], "--beta", spec["beta"],
           "--lr", spec["learning_rate"], "--layers", m["num_layers"], "--d-model", m["d_model"],
           "--heads", m["num_heads"], "--mlp", round(2 * m["d_ff"] / 3), "--seed", spec["seed"]]
    out = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, text=True, env=env, timeout=timeout,
                         cwd=C.REPO_ROOT)
    if out.returncode != 0:
        raise C.WorkerError(f"tunix peer failed (exit {out.returncode}): {out.stdout[-2000:]}")
    line = next((x for x in reversed(out.stdout.splitlines()) if x.startswith("{")), None)
    if line is None:
        raise C.WorkerError(f"tunix peer printed no JSON line: {out.stdout[-2000:]}")
    return json.loads(line)


def render_markdown(data: dict[str, Any]) -> str:
    s, m = data["settings"], data["machine"]
    o, t, x = data["ours"], data.get("trl"), data.get("tunix")
    lines = ["# GRPO training throughput: jaxrl_self vs TRL GRPOTrainer (PyTorch CPU) and google-tunix (JAX)", ""]
    if data["quick"]:
        lines += ["> **SMOKE RUN (`--quick`)**: tiny batch, few steps, possibly a busy machine. These numbers only "
                  "show that the harness works; they are not measurements.", ""]
    loads = ", ".join(f"{k} {v}" for k, v in data["loadavg"].items())
    lines += [
        f"- created {data['created']} by `{data['command']}`",
        f"- machine: {m['cpu_model']}, {m['cpus_usable']}/{m['cpu_count']} CPUs usable, {m['mem_total_gib']} GiB, "
        f"{m['platform']}; load average before each side: {loads}",
        f"- step: {s['num_prompts']} prompts x {s['group_size']} completions, <= {s['max_new_tokens']} new tokens, "
        f"addition with 1..{s['max_digits']}-digit operands, beta {s['beta']}, lr {s['learning_rate']}; model "
        f"{s['model']['num_layers']} layers, width {s['model']['d_model']}, {s['model']['num_heads']} heads, vocab "
        f"{s['model']['vocab_size']} (ours {o['params']:,} parameters"
        + (f", TRL Llama {t['params']:,}" if t else "") + ")",
        f"- {s['warmup']} warm-up steps, then {s['steps']} measured steps per side",
        f"- ours: {_versions(o['worker']['versions'])}"
        + (f"; TRL: {_versions(t['worker']['versions'])}, torch threads {t['worker']['torch_threads']}" if t else "")
        + ("; tunix: google-tunix 0.1.7 (`../shared/peers/tunix_grpo_cpu.py`, its own venv)" if x else ""),
        "",
        "| implementation | trained tokens/s | s/step (median) | tokens/step | ours / TRL (tokens/s) | "
        "tunix s/step / this s/step |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = [("ours, one update per call", o["per_step"]), (f"ours, {s['steps']} updates per program (scan)",
                                                         {"tokens_per_s": o["scanned"]["tokens_per_s"],
                                                          "median_s_per_step": o["scanned"]["median_s_per_step"],
                                                          "mean_tokens_per_step": statistics.fmean(
                                                              o["scanned"]["tokens"]) / s["steps"]})]
    if t:
        rows.append(("TRL GRPOTrainer", t["per_step"]))
    if x:
        rows.append(("google-tunix GRPOLearner", {"tokens_per_s": x["loss_tokens_per_s"],
                                                  "median_s_per_step": x["median_s_per_step"],
                                                  "mean_tokens_per_step": x["loss_tokens_per_step"]}))
    for label, r in rows:
        ratio = C.fmt_ratio(r["tokens_per_s"] / t["per_step"]["tokens_per_s"]) if t else "-"
        vs_tunix = C.fmt_ratio(x["median_s_per_step"] / r["median_s_per_step"]) if x else "-"
        lines.append(f"| {label} | {r['tokens_per_s']:,.0f} | {r['median_s_per_step']:.4f} | "
                     f"{r['mean_tokens_per_step']:.0f} | {ratio} | {vs_tunix} |")
    c = o["compile_s"]
    lines += ["", f"Ours compile (apart, not in the figures): update {c['update_lower'] + c['update_compile']:.1f} s, "
              f"scanned program {c['scan_compile']:.1f} s." + (f" TRL warm-up steps: {t['warmup_s']:.1f} s." if t else "")]
    if x:
        ph = x.get("phase_median_s", {})
        lines += ["", "tunix's step, median seconds per phase: " + ", ".join(f"{k} {v:.4f}" for k, v in ph.items()
                                                                        if isinstance(v, (int, float))) + "."]
    if t:
        lines += ["", f"Aim: ours >= {AIM:g}x TRL in trained tokens/s: "
                  + {True: "met", False: "**not met**"}[data["aim_met"]]
                  + f" (one update per call: {C.fmt_ratio(data['ratio_per_step'])}, scanned: "
                    f"{C.fmt_ratio(data['ratio_scanned'])})."]
    lines += ["", "Method: `benchmarks/grpo_throughput.py` (module docstring)."]
    floor = o.get("floor")
    if floor:
        w, r = floor["work"], floor["matmul_gflops"]
        floor_s = w["flops"] / (r["best"] * 1e9)
        text = ("**How far can the ratio go on this machine?** The least work of one step is "
                f"{w['flops'] / 1e9:.2f} GFLOP of matrix products ({w['token_forwards']:,} token forwards of "
                f"{w['flops_per_token_forward'] / 1e3:.0f} kFLOP: sampling, reference forward, policy forward and "
                "backward; `step_flops`). The fastest this CPU multiplies the step's own matrix shapes is "
                f"{r['best']:.1f} GFLOP/s (XLA:CPU, each product alone; `matmul_rate`), so no implementation "
                f"can take less than {floor_s * 1e3:.1f} ms per step. Ours runs at "
                f"{w['flops'] / o['per_step']['median_s_per_step'] / 1e9:.1f} GFLOP/s per call "
                f"({floor_s / o['per_step']['median_s_per_step']:.0%} of the floor) and "
                f"{w['flops'] / o['scanned']['median_s_per_step'] / 1e9:.1f} GFLOP/s scanned")
        if t:
            trl_s = t["per_step"]["median_s_per_step"]
            text += (f"; TRL at {w['flops'] / trl_s / 1e9:.1f} GFLOP/s (the floor is {trl_s / floor_s:.1f}x TRL's "
                     f"{trl_s * 1e3:.0f} ms" + (f": the {AIM:g}x aim is beyond it at this model size)" if
                                                trl_s / floor_s < AIM else ")"))
        if x:
            text += f"; tunix at {w['flops'] / x['median_s_per_step'] / 1e9:.1f} GFLOP/s"
        lines += ["", text + "."]
    return "\n".join(lines)


def _versions(v: dict[str, Any]) -> str:
    return ", ".join(f"{k} {x}" for k, x in v.items() if x)


def orchestrate(args: argparse.Namespace) -> None:
    t_start = time.perf_counter()
    preset = dict(QUICK if args.quick else FULL)
    for k in ("num_prompts", "group_size", "max_new_tokens", "steps", "warmup"):
        if getattr(args, k) is not None:
            preset[k] = getattr(args, k)
    model = MODEL if args.d_model is None else {**MODEL, "d_model": args.d_model, "d_ff": 4 * args.d_model}
    spec = {**preset, "model": model, "beta": args.beta, "learning_rate": args.learning_rate, "seed": args.seed}
    machine = C.machine_info()
    trl_python = C.ensure_venv("trl", list(TRL_REQUIREMENTS), rebuild=args.rebuild_venv) if "trl" in args.peers else None
    if "tunix" in args.peers and not TUNIX_SCRIPT.exists():
        C.log(f"[{NAME}] tunix skipped: its peer script is not at {TUNIX_SCRIPT}")
        args.peers = [p for p in args.peers if p != "tunix"]
    tunix_python = C.ensure_venv("tunix", list(TUNIX_REQUIREMENTS)) if "tunix" in args.peers else None
    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", JAX_PLATFORMS="cpu")
    for k in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        env.pop(k, None)
    script = Path(__file__).resolve()
    loads = {}
    C.log(f"[{NAME}] ours: {sys.executable}")
    timing = {}
    with C.timing_lock(f"{NAME} ours") as timing["ours"]:
        loads["ours"] = [round(x, 2) for x in os.getloadavg()]
        ours = C.run_worker(sys.executable, script, ["--worker", json.dumps({**spec, "impl": "ours"})], env=env,
                            timeout=args.worker_timeout)
    trl = tunix = None
    if trl_python is not None:
        C.log(f"[{NAME}] TRL: {trl_python}")
        with C.timing_lock(f"{NAME} trl") as timing["trl"]:
            loads["trl"] = [round(x, 2) for x in os.getloadavg()]
            trl = C.run_worker(trl_python, script, ["--worker", json.dumps({**spec, "impl": "trl",
                                                                            "vocab": ours["vocab"]})],
                               env=env, timeout=args.worker_timeout)
    if tunix_python is not None:
        C.log(f"[{NAME}] tunix: {tunix_python}")
        with C.timing_lock(f"{NAME} tunix") as timing["tunix"]:
            loads["tunix"] = [round(x, 2) for x in os.getloadavg()]
            tunix = run_tunix(tunix_python, spec, C.worker_env(), args.worker_timeout)
    data = {
        "benchmark": NAME,
        "quick": args.quick,
        "created": C.utc_now(),
        "command": " ".join(["python", "benchmarks/grpo_throughput.py", *sys.argv[1:]]),
        "wall_s": round(time.perf_counter() - t_start, 1),
        "machine": machine,
        "loadavg": loads,
        "timing": timing,
        "settings": spec,
        "ours": {k: v for k, v in ours.items() if k != "vocab"},
        "aim": AIM,
    }
    if trl is not None:
        meta = C.venv_metadata(trl_python)
        data["trl_venv"] = {"requirements": meta.get("requirements"), "created": meta.get("created"),
                            "freeze": meta.get("freeze")}
        data["trl"] = trl
        data["ratio_per_step"] = ours["per_step"]["tokens_per_s"] / trl["per_step"]["tokens_per_s"]
        data["ratio_scanned"] = ours["scanned"]["tokens_per_s"] / trl["per_step"]["tokens_per_s"]
        data["aim_met"] = data["ratio_per_step"] >= AIM
    if tunix is not None:
        data["tunix"] = tunix
        # per call: tunix's median seconds per step over ours (one update per call); both run to R tokens
        data["tunix_over_ours_s_per_step"] = tunix["median_s_per_step"] / ours["per_step"]["median_s_per_step"]
    output = args.output or (NAME + (".quick" if args.quick else ""))
    json_path, md_path = C.write_results(output, data, render_markdown(data))
    C.log(f"[{NAME}] done in {data['wall_s']} s -> {json_path.relative_to(C.REPO_ROOT)}")
    print(md_path.read_text())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="GRPO step throughput: jaxrl_self vs TRL GRPOTrainer on PyTorch CPU.")
    p.add_argument("--quick", action="store_true", help=f"smoke run {QUICK}; writes {NAME}.quick.*")
    p.add_argument("--num-prompts", type=int, default=None, help=f"prompts per step (default {FULL['num_prompts']})")
    p.add_argument("--group-size", type=int, default=None, help=f"completions per prompt ({FULL['group_size']})")
    p.add_argument("--max-new-tokens", type=int, default=None, help=f"completion budget ({FULL['max_new_tokens']})")
    p.add_argument("--steps", type=int, default=None, help=f"measured steps per side ({FULL['steps']})")
    p.add_argument("--warmup", type=int, default=None, help=f"warm-up steps per side ({FULL['warmup']})")
    p.add_argument("--d-model", type=int, default=None,
                   help=f"model width, d_ff = 4 x it (default {MODEL['d_model']}; 256 = the 4x wider check)")
    p.add_argument("--beta", type=float, default=0.04, help="KL coefficient (reference model on both sides)")
    p.add_argument("--learning-rate", type=float, default=1e-6, help="Adam step size, both sides")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rebuild-venv", action="store_true", help="rebuild benchmarks/.venvs/trl")
    p.add_argument("--peers", nargs="*", choices=("trl", "tunix"), default=["trl", "tunix"],
                   help="peers timed after ours in the same job (default both)")
    p.add_argument("--output", default=None, help="result file stem under benchmarks/results")
    p.add_argument("--worker-timeout", type=float, default=3600.0)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker is not None:
        spec = json.loads(args.worker)
        C.emit_result(worker_ours(spec) if spec["impl"] == "ours" else worker_trl(spec))
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
