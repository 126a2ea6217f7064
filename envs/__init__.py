"""Tensorized environments and token tasks, installed as ``jaxrl_self.envs``.

    from jaxrl_self import envs
    env = envs.make("cartpole")
    envs.check_env(env)

Built-in names: see :func:`registered_names`. Register your own with :func:`register`. Other libraries'
environments come in through adapter prefixes (:func:`registered_prefixes`), e.g. ``envs.make("gymnax:Pendulum-v1")``.
"""
from jaxrl_self.core.environment import Environment, EnvParams, EnvState, LevelEnv, Wrapper
from jaxrl_self.core.sequence import Problem, SequenceTask
from jaxrl_self.envs.adapters import GymnaxAdapter, convert_space, from_gymnax
from jaxrl_self.envs.checker import EnvCheckError, check_env
from jaxrl_self.envs.registry import (MissingExtraError, UnknownEnvironmentError, describe, make, register,
                                     register_prefix, registered_names, registered_prefixes)
from jaxrl_self.envs.wrappers import (
    ClipAction,
    FlattenObservation,
    LevelSet,
    LogState,
    LogWrapper,
    ReplayLevel,
    ResampleLevel,
    flatten_observation,
)

__all__ = [
    "Environment",
    "EnvParams",
    "EnvState",
    "LevelEnv",
    "Wrapper",
    "Problem",
    "SequenceTask",
    "GymnaxAdapter",
    "convert_space",
    "from_gymnax",
    "EnvCheckError",
    "check_env",
    "UnknownEnvironmentError",
    "MissingExtraError",
    "register_prefix",
    "registered_prefixes",
    "ClipAction",
    "describe",
    "make",
    "register",
    "registered_names",
    "FlattenObservation",
    "LevelSet",
    "LogState",
    "LogWrapper",
    "ReplayLevel",
    "ResampleLevel",
    "flatten_observation",
]

# ------------------------------------------------------------------------------------------ built-ins
register("cartpole", "jaxrl_self.envs.cartpole:CartPole", description="CartPole-v1, classic dynamics (gymnasium parity)")
register("CartPole-v1", "jaxrl_self.envs.cartpole:CartPole", description="alias of 'cartpole'")
register("maze", "jaxrl_self.envs.maze:Maze", description="UED maze, 13x13, partial 5x5 view, 25-wall generator")
register("maze-60", "jaxrl_self.envs.maze:Maze", max_walls=60, description="UED maze with the 60-wall generator")
register("addition", "jaxrl_self.envs.tokens:AdditionTask", description="token task: multi-digit addition with verifier")
register("chain", "jaxrl_self.envs.tokens:ChainTask",
         description="token task: arithmetic chain with a heavy-tailed number of steps (long-tailed CoT)")
register("probe-constant", "jaxrl_self.envs.probes:ProbeConstant", description="probe: constant reward, V = r (or r/(1-γ) with truncate=True)")
register("probe-observation", "jaxrl_self.envs.probes:ProbeObservation", description="probe: reward = observation (±1), V(s) = s")
register("probe-action", "jaxrl_self.envs.probes:ProbeAction", description="probe: reward +1 for action 1, -1 for action 0")
register("probe-credit", "jaxrl_self.envs.probes:ProbeCredit", description="probe: two steps, reward at step 2 for the step-1 action matching the cue")
register("probe-continuous", "jaxrl_self.envs.probes:ProbeContinuous",
         description="probe: continuous action, reward -(a - obs)^2 (the Gaussian policy's mean must follow obs)")
register_prefix("gymnax", "jaxrl_self.envs.adapters:from_gymnax", extra="gymnax", module="gymnax",
                description="any gymnax environment by its gymnax.make name (classic control, MinAtar, bsuite, ...)")
register_prefix("brax", "jaxrl_self.envs.ecosystem.brax:make_brax", extra="brax", module="brax",
                description="Brax continuous control (ant, halfcheetah, hopper, inverted_pendulum, ...)")
register_prefix("jumanji", "jaxrl_self.envs.ecosystem.jumanji:make_jumanji", extra="jumanji", module="jumanji",
                description="Jumanji combinatorial and grid environments by their jumanji.make name")
register_prefix("navix", "jaxrl_self.envs.ecosystem.navix:make_navix", extra="navix", module="navix",
                description="NAVIX MiniGrid gridworlds by their navix.make name (Navix-Empty-5x5-v0, ...)")
register_prefix("kinetix", "jaxrl_self.envs.ecosystem.kinetix:make_kinetix", extra="kinetix", module="kinetix",
                description="Kinetix 2D physics levels (s, m, l) as a level env for the curricula; needs jax<=0.9")
register("probe-memory", "jaxrl_self.envs.probes:ProbeMemory", description="probe: two steps, the step-2 action must recall the step-1 cue (needs memory)")
