"""SOAR (jaxrl_self/teach/soar.py): a problem-writing teacher paid by the students' progress on hard problems.

* the grounded and learnability rewards and the teacher's RLOO advantages against hand-computed values;
* the promotion rule on a scripted reward sequence (when it fires, which student is promoted);
* malformed pairs are masked and never reach a student (an all-malformed dataset leaves the student bitwise
  unchanged);
* the inner runs vmapped over r x g equal the same runs one at a time;
* a tiny whole run: the hard set, the warm-up teacher's format, promotion swapping the baseline, and resume
  mid-outer-loop bitwise.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_self import lm
from jaxrl_self.core import ConfigError
from jaxrl_self.core.sequence import VOCAB
from jaxrl_self.teach import grounded, soar
from treecheck import assert_bitwise

TASK = lm.base_model_task(lm.read_metadata("addition-base"))
# a hot student: mixed rewards in every group, so each inner step moves the parameters
STUDENT = soar.Config().student.replace(num_updates=2, num_prompts=4, group_size=4, temperature=2.0)
# promotion_threshold -1 with a window of 1: every step promotes (rewards are >= -1), so the swap is exercised
TINY = soar.Config(base_model="addition-base", hard_difficulty=5, num_updates=3, num_prompts=4, num_datasets=2,
                   num_students=2, student=STUDENT, hard_candidates=8, hard_samples=4, reward_problems=4,
                   warmup_steps=250, sft_batch=32,
                   promotion_window=1, promotion_threshold=-1.0)


def changed(a, b) -> bool:
    return any(not np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def tokens(text: str, width: int = 24) -> list[int]:
    ids = list(VOCAB.encode(text.split()))
    return ids + [VOCAB.PAD] * (width - len(ids))


# ================================================================================================ pure pieces
def test_rewards_and_teacher_advantages_hand_computed():
    acc = jnp.asarray([[0.25, 0.5], [0.0, 0.0], [0.125, 0.125]])
    np.testing.assert_allclose(grounded.grounded_rewards(acc, jnp.asarray(0.125)), [0.25, -0.125, 0.0])
    success = jnp.asarray([[0.0, 0.25, 1.0], [0.5, 0.5, 0.0], [0.75, 0.0, 0.0]])
    valid = jnp.asarray([[True, True, True], [True, False, True], [False, False, False]])
    # dataset 0: (0 + 0.75 + 0) / 3; dataset 1: (0.5 + 0) / 2 (the invalid pair is skipped); dataset 2: no pair
    np.testing.assert_allclose(soar.learnability_rewards(success, valid), [0.25, 0.25, 0.0])
    adv = soar.teacher_advantages(jnp.asarray([1.0, 2.0, 3.0, 6.0]), num_pairs=2)
    rloo = [1 - 11 / 3, 2 - 10 / 3, 3 - 3, 6 - 2]  # R_k - mean of the others
    np.testing.assert_allclose(adv, rloo + rloo, rtol=1e-6)  # row b * g + k: pair b of dataset k


def test_promotion_fires_on_the_scripted_sequence_and_restarts():
    window, filled = jnp.zeros(3), jnp.zeros((), jnp.int32)
    fired_at, averages = [], []
    for t, r in enumerate([0.0, 0.02, 0.02, 0.02, 0.0, 0.0, 0.05, 0.0, 0.0]):
        window, filled, fired, avg = grounded.promotion_step(window, filled, jnp.asarray(r), 0.01)
        averages.append(float(avg))
        if fired:
            fired_at.append(t)
    # step 2: (0 + .02 + .02) / 3 = .0133 > .01 fires; the window restarts, so steps 3, 4 cannot fire; step 5:
    # (.02 + 0 + 0) / 3 = .0067 does not; step 6: (0 + 0 + .05) / 3 = .0167 fires; steps 7, 8 refill
    assert fired_at == [2, 6]
    assert np.isnan(averages[0]) and np.isnan(averages[3]) and np.isnan(averages[4])
    np.testing.assert_allclose(averages[5], 0.02 / 3, rtol=1e-6)
    off = grounded.promotion_step(jnp.zeros(1), jnp.zeros((), jnp.int32), jnp.asarray(1.0), 0.01, enabled=False)
    assert not bool(off[2])
    rewards = jnp.asarray([0.1, 0.3, 0.3])
    acc = jnp.asarray([[0.9, 0.9, 0.9, 0.9], [0.1, 0.5, 0.2, 0.4], [0.0, 0.0, 0.0, 0.0]])
    best, median = grounded.promoted_student(rewards, acc)
    assert int(best) == 1 and int(median) == 2  # the first best dataset; its accuracies sorted 0.1 0.2 0.4 0.5


def test_written_pairs_are_parsed_strictly_with_the_teachers_answer():
    rows = jnp.asarray([tokens("<q> 1 2 + 3 = </q> <a> 5 1 </a> <eos>"),     # well formed, right (15)
                        tokens("<q> 1 2 + 3 = </q> <a> 6 1 </a> <eos>"),     # well formed, wrong answer
                        tokens("<q> 0 2 + 3 = </q> <a> 5 </a> <eos>"),       # leading zero
                        tokens("<q> 1 2 + 3 = </q> <a> 5 1 <eos>"),          # answer not closed by </a>
                        tokens("<q> 1 2 + 3 = </q> <a> 5 1 </a> 7 7"),       # junk after </a>
                        tokens("<q> 1 2 + = </q> <a> 5 </a> <eos>")])        # no second operand
    problems, valid, correct = soar.written_problems(TASK, rows)
    assert valid.tolist() == [True, True, False, False, False, False]
    assert correct.tolist() == [True, False, False, False, False, False]
    assert TASK.to_text(problems.answer[1]) == "6 1"  # the student is trained to match the teacher's answer
    assert TASK.to_text(problems.solution[1]) == "<a> 6 1 </a> <eos>"
    assert TASK.to_text(problems.prompt[1]) == "<bos> <q> 1 2 + 3 = </q>"


@pytest.fixture(scope="module")
def base():
    policy = lm.load_policy(TINY, TASK, context=26)
    return policy.params, policy.model_config


def _datasets(k: int, valid_every: int = 1) -> lm.ProblemSet:
    # 4-digit problems: partly solved, so the students' groups have mixed rewards and learn
    probs = lm.sample_problems(jax.random.key(3), TASK, lm.difficulty_params(TASK, 4), k * TINY.num_prompts)
    probs = jax.tree.map(lambda x: x.reshape((k, TINY.num_prompts) + x.shape[1:]), probs)
    valid = (jnp.arange(k * TINY.num_prompts) % valid_every == 0).reshape(k, TINY.num_prompts)
    return lm.ProblemSet(problems=probs, valid=valid)


def test_malformed_pairs_never_reach_a_student(base):
    params, cfg = base
    inner = soar.make_inner(TINY, TASK, cfg, "packed")
    one = jax.jit(inner.one)
    none_valid = jax.tree.map(lambda x: x[0], _datasets(1)).replace(valid=jnp.zeros((TINY.num_prompts,), bool))
    after, _ = one(jax.random.key(0), params, none_valid)
    assert_bitwise(after, params)  # an all-malformed dataset: nothing reached the student
    some = jax.tree.map(lambda x: x[0], _datasets(1, valid_every=2))
    source = lm.problem_source(TASK, problems=some)
    state = source.init(jax.random.key(1))
    for _ in range(4):  # several passes: only the valid rows are ever drawn
        state, draw = source.draw(state, jax.random.key(2), TINY.student.num_prompts)
        assert bool(jnp.all(some.valid[draw.index])) and bool(jnp.all(draw.valid))
    after, _ = one(jax.random.key(0), params, some)
    assert changed(after, params)


def test_vmapped_inner_runs_equal_one_at_a_time(base):
    params, cfg = base
    inner = soar.make_inner(TINY.replace(student=STUDENT.replace(temperature=1.0)), TASK, cfg, "packed")
    k = TINY.num_datasets * TINY.num_students
    keys = jax.random.split(jax.random.key(4), k)
    data = _datasets(k)
    batched, m_batched = jax.jit(inner)(keys, params, data)
    one = jax.jit(inner.one)
    for i in range(k):
        p_i, m_i = one(keys[i], params, jax.tree.map(lambda x: x[i], data))
        # batched matmuls round differently on XLA:CPU, and Adam normalises a near-zero gradient into a full step:
        # most entries agree to 1e-6 and 99.9% to a tenth of one Adam step (another run differs by ~lr almost
        # everywhere); a few may differ by up to one step (lr) per inner step
        diff = np.concatenate([np.abs(np.asarray(a[i]) - np.asarray(b)).ravel()
                               for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(p_i))])
        lr = STUDENT.learning_rate
        assert np.median(diff) < 1e-6 and np.quantile(diff, 0.999) < 0.1 * lr and diff.max() < lr * STUDENT.num_updates
        np.testing.assert_array_equal(m_batched.reward_mean[i], m_i.reward_mean)  # the same responses sampled


# ================================================================================================ the whole run
@pytest.fixture(scope="module")
def run():
    train = soar.make_train(TINY, TASK)
    init = jax.jit(train.init)(jax.random.key(0))
    update = jax.jit(train.update)
    return train, init, update


def _steps(update, state, n):
    states, metrics = [], []
    for _ in range(n):
        state, m = update(state)
        states.append(state)
        metrics.append(m)
    return states, jax.tree.map(lambda *x: jnp.stack(x), *metrics)


def test_hard_set_and_warm_up_teacher(run, base):
    train, state, _ = run
    hard = state.hard
    # at 5 digits the base model never succeeds: every candidate qualifies, split alternately in two halves
    assert int(hard.qualified) == TINY.hard_candidates
    assert hard.train.valid.tolist() == [True, False] * 4 and hard.test.valid.tolist() == [False, True] * 4
    assert bool(jnp.all(hard.train.problems.difficulty == TINY.hard_difficulty))
    assert_bitwise(state.baseline, base[0])  # the students start from the base model
    seq, mask = soar._teacher_sequences(TASK, lm.sample_problems(jax.random.key(0), TASK, TASK.default_params, 8))
    problems, valid, correct = soar.written_problems(TASK, seq[:, 2:])
    assert bool(jnp.all(valid)) and bool(jnp.all(correct))  # the warm-up's targets are well-formed, true pairs
    assert not bool(jnp.any(mask[:, :2])) and bool(jnp.all(mask[:, 2]))  # loss after the teacher prompt only


def test_promotion_swaps_the_baseline_and_resume_is_bitwise(run, tmp_path):
    from jaxrl_self.run.checkpoint import Checkpointer

    _, state0, update = run
    full, m_full = _steps(update, state0, 3)
    assert m_full.promoted.tolist() == [True, True, True] and int(full[-1].promotion.count) == 3
    assert int(jnp.sum(full[-1].promotion.promoted.valid)) <= 3 * TINY.num_prompts
    # (the first step's teacher answers are all wrong, so its students never match one and stay put)
    assert float(m_full.inner_reward_first[-1]) > 0 and changed(full[-1].baseline, state0.baseline)
    assert np.all(np.isfinite(np.asarray(m_full.loss))) and np.all((m_full.fill_rate >= 0) & (m_full.fill_rate <= 1))
    mid = full[0]
    with Checkpointer(tmp_path / "ckpt", keep=1) as ckpt:
        ckpt.save(1, mid, {"algo": "soar"})
        step, restored, _ = ckpt.restore(jax.eval_shape(lambda: state0))
    assert step == 1
    resumed, m_resumed = _steps(update, restored, 2)
    assert_bitwise(full[-1], resumed[-1])  # teacher, baseline student, promoted set, moving-average window, RNG
    assert_bitwise(jax.tree.map(lambda x: x[1:], m_full), m_resumed)


def test_bad_configs_are_refused_before_compiling():
    for field, value in [("teacher_reward", "curiosity"), ("num_students", 0), ("hard_difficulty", 9),
                         ("warmup_difficulty", 0), ("num_datasets", 1), ("promotion", "yes"), ("warmup_steps", -1),
                         ("warmup_steps", [1]), ("warmup_steps", 2.5)]:
        with pytest.raises(ConfigError, match=field):
            soar.make_train(TINY.replace(**{field: value}), TASK)
    with pytest.raises(ConfigError, match="learning_rate"):
        soar.make_train(TINY.replace(student=STUDENT.replace(learning_rate=-1.0)), TASK)


def test_cli_knows_soar(capsys):
    from jaxrl_self.cli import main

    assert main(["train", "soar", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--num-datasets" in out and "--teacher-reward" in out and "--student.num-updates" in out
    assert main(["train", "soar", "--task", "addition", "--teacher-reward", "x"]) == 2
    assert "teacher_reward" in capsys.readouterr().err
