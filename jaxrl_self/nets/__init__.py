"""Networks: parameter pytrees plus pure ``init``/``apply`` functions."""
from jaxrl_self.nets.transformer import KVCache, TransformerConfig  # noqa: F401
from jaxrl_self.nets.actor_critic import LSTM, MLPActorCritic, RecurrentActorCritic  # noqa: F401
