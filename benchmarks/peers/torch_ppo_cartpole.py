# Copied from the project's shared peer loop /work/shared/peers/torch_ppo_cartpole.py (written for this project
# as a non-JAX reference; measured at ~3k env steps/s on the 2-core CPU), for benchmarks/ppo_cartpole.py.
# Changes to the copy, none of which touches what is computed or timed:
#   * the result line is prefixed with benchmarks/_common.RESULT_MARKER so the benchmark harness can find it;
#   * it also reports, per update, the sum and the number of the returns of the episodes that finished during
#     that update (the learning curve, same definition as the JAX implementations), the setup time, and the
#     versions of numpy and python.
"""Non-JAX reference: single-file PPO (discrete, clipped) on CartPole-v1 in PyTorch.

A peer for benchmarks; hyperparameters mirror purejaxrl's ppo.py defaults:
4 envs x 128 steps, 4 epochs, 4 minibatches, separate 64-64 tanh actor and critic,
Adam lr 2.5e-4 (linearly annealed, eps 1e-5), gamma 0.99, GAE lambda 0.95, clip 0.2,
value clipping, entropy 0.01, value coef 0.5, global grad-norm clip 0.5.

Envs: gymnasium SyncVectorEnv with same-step autoreset (like gymnax), done = terminated|truncated
and no bootstrap on truncation (as purejaxrl does).

Prints one JSON line with wall time of the training loop, env steps/s and the final return
(mean return of the episodes that finished during the last 10 updates, i.e. ~5k steps).

Usage: python torch_ppo_cartpole.py [--total-timesteps 500000] [--seed 0] [--threads N]
"""
import argparse
import json
import platform
import time

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn


def layer(n_in, n_out, gain):
    lin = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(lin.weight, gain)
    nn.init.zeros_(lin.bias)
    return lin


class Policy(nn.Module):
    def __init__(self, obs_dim, n_actions):
        super().__init__()
        g = float(np.sqrt(2))
        self.pi = nn.Sequential(
            layer(obs_dim, 64, g), nn.Tanh(), layer(64, 64, g), nn.Tanh(), layer(64, n_actions, 0.01)
        )
        self.v = nn.Sequential(
            layer(obs_dim, 64, g), nn.Tanh(), layer(64, 64, g), nn.Tanh(), layer(64, 1, 1.0)
        )

    def dist_and_value(self, obs):
        return torch.distributions.Categorical(logits=self.pi(obs)), self.v(obs).squeeze(-1)


def make_envs(n, seed):
    kwargs = {}
    mode = getattr(gym.vector, "AutoresetMode", None)
    if mode is not None:
        kwargs["autoreset_mode"] = mode.SAME_STEP
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(n)], **kwargs)
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    obs, _ = envs.reset(seed=seed)
    return envs, obs


#: must equal benchmarks/_common.RESULT_MARKER (this file runs in a venv without the project installed)
RESULT_MARKER = "@@BENCH_RESULT@@ "


def main():
    t_setup = time.perf_counter()
    ap = argparse.ArgumentParser()
    ap.add_argument("--total-timesteps", type=int, default=500_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    ap.add_argument("--num-envs", type=int, default=4)
    ap.add_argument("--num-steps", type=int, default=128)
    a = ap.parse_args()

    lr, epochs, n_mb = 2.5e-4, 4, 4
    gamma, lam, clip, ent_c, vf_c, max_gn = 0.99, 0.95, 0.2, 0.01, 0.5, 0.5
    E, T = a.num_envs, a.num_steps
    batch = E * T
    mb = batch // n_mb
    n_updates = a.total_timesteps // batch

    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)

    envs, obs_np = make_envs(E, a.seed)
    obs_dim = envs.single_observation_space.shape[0]
    net = Policy(obs_dim, envs.single_action_space.n)
    opt = torch.optim.Adam(net.parameters(), lr=lr, eps=1e-5)

    buf_obs = torch.zeros((T, E, obs_dim))
    buf_act = torch.zeros((T, E), dtype=torch.long)
    buf_logp = torch.zeros((T, E))
    buf_rew = torch.zeros((T, E))
    buf_done = torch.zeros((T, E))
    buf_val = torch.zeros((T, E))

    finished = []  # (update index, episode return)
    obs = torch.as_tensor(obs_np, dtype=torch.float32)
    t0 = time.perf_counter()
    setup_s = t0 - t_setup
    for upd in range(n_updates):
        for g_ in opt.param_groups:
            g_["lr"] = lr * (1.0 - upd / n_updates)
        # rollout
        with torch.no_grad():
            for t in range(T):
                dist, val = net.dist_and_value(obs)
                act = dist.sample()
                buf_obs[t], buf_act[t], buf_logp[t], buf_val[t] = obs, act, dist.log_prob(act), val
                obs_np, rew, term, trunc, info = envs.step(act.numpy())
                buf_rew[t] = torch.as_tensor(rew, dtype=torch.float32)
                buf_done[t] = torch.as_tensor(np.logical_or(term, trunc), dtype=torch.float32)
                obs = torch.as_tensor(obs_np, dtype=torch.float32)
                if "episode" in info:
                    for r in info["episode"]["r"][info["_episode"]]:
                        finished.append((upd, float(r)))
            # GAE (a done at step t cuts the bootstrap from step t+1)
            _, next_val = net.dist_and_value(obs)
            adv = torch.zeros((T, E))
            gae = torch.zeros(E)
            for t in reversed(range(T)):
                nv = next_val if t == T - 1 else buf_val[t + 1]
                nonterm = 1.0 - buf_done[t]
                delta = buf_rew[t] + gamma * nv * nonterm - buf_val[t]
                gae = delta + gamma * lam * nonterm * gae
                adv[t] = gae
            ret = adv + buf_val
        # update
        f_obs, f_act, f_logp = buf_obs.reshape(batch, -1), buf_act.reshape(-1), buf_logp.reshape(-1)
        f_adv, f_ret, f_val = adv.reshape(-1), ret.reshape(-1), buf_val.reshape(-1)
        for _ in range(epochs):
            perm = torch.randperm(batch)
            for k in range(n_mb):
                idx = perm[k * mb:(k + 1) * mb]
                dist, v = net.dist_and_value(f_obs[idx])
                ratio = (dist.log_prob(f_act[idx]) - f_logp[idx]).exp()
                a_ = f_adv[idx]
                a_ = (a_ - a_.mean()) / (a_.std() + 1e-8)
                pg = -torch.min(ratio * a_, ratio.clamp(1 - clip, 1 + clip) * a_).mean()
                v_old = f_val[idx]
                v_clip = v_old + (v - v_old).clamp(-clip, clip)
                vl = 0.5 * torch.max((v - f_ret[idx]) ** 2, (v_clip - f_ret[idx]) ** 2).mean()
                loss = pg + vf_c * vl - ent_c * dist.entropy().mean()
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), max_gn)
                opt.step()
    wall = time.perf_counter() - t0
    steps = n_updates * batch
    last = [r for (u, r) in finished if u >= n_updates - 10]
    curve_sum, curve_count = [0.0] * n_updates, [0] * n_updates
    for u, r in finished:
        curve_sum[u] += r
        curve_count[u] += 1
    print(RESULT_MARKER + json.dumps({
        "impl": "torch", "torch": torch.__version__, "gymnasium": gym.__version__, "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(), "seed": a.seed, "env_steps": steps,
        "num_envs": E, "num_steps": T, "num_updates": n_updates, "setup_s": round(setup_s, 3),
        "wall_s": round(wall, 3), "steps_per_s": round(steps / wall, 1),
        "final_return_last10upd": round(float(np.mean(last)), 2) if last else None,
        "episodes_last10upd": len(last),
        "curve_return_sum": curve_sum, "curve_episodes": curve_count,
    }), flush=True)

if __name__ == "__main__":
    main()
