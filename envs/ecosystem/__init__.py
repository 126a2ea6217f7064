"""Adapters for other JAX environment libraries, one file per library, behind registry prefixes.

=================  ======================  ==========================================================
prefix             extra                   module
=================  ======================  ==========================================================
``gymnax:NAME``    ``jaxrl-self[gymnax]``  :mod:`jaxrl_self.envs.adapters` (``from_gymnax``)
``brax:NAME``      ``jaxrl-self[brax]``    :mod:`jaxrl_self.envs.ecosystem.brax`
``jumanji:NAME``   ``jaxrl-self[jumanji]`` :mod:`jaxrl_self.envs.ecosystem.jumanji`
``navix:NAME``     ``jaxrl-self[navix]``   :mod:`jaxrl_self.envs.ecosystem.navix`
=================  ======================  ==========================================================

Each module imports its library only when an environment is made, so ``import jaxrl_self.envs`` never needs
the extras; a missing one is a one-line :class:`~jaxrl_self.envs.MissingExtraError` naming the extra.
"""
