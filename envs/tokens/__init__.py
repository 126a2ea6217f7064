"""Token reasoning tasks with verifiers (the :class:`~jaxrl_self.core.SequenceTask` contract).

* :class:`AdditionTask` (``make("addition")``): ``a + b`` with ``n``-digit operands; reversed answers by
  default, optional per-column scratchpad, and :meth:`AdditionTask.parse_problem` for teacher-written problems.
* :class:`ChainTask` (``make("chain")``): a start digit and ``n`` operations modulo 10 with every intermediate
  value written as reasoning; ``n`` is heavy-tailed (truncated power law), so response lengths are long-tailed.

All tasks share :data:`jaxrl_self.core.VOCAB` and the response format
``[<think> ... </think>] <a> answer </a> <eos>``.
"""
from jaxrl_self.envs.tokens.addition import AdditionParams, AdditionTask
from jaxrl_self.envs.tokens.chain import OPS, ChainParams, ChainTask, apply_op

__all__ = ["AdditionParams", "AdditionTask", "ChainParams", "ChainTask", "OPS", "apply_op"]
