"""Helpers the runner-level tests share: stop a run right after a checkpoint, reuse compiled programs."""
from __future__ import annotations

from typing import Any

from jaxrl_self.run import checkpoint as ckpt_lib
from jaxrl_self.run.runner import Runner


def interrupt_after_save(monkeypatch, at_step: int) -> None:
    """Ctrl-C right after checkpoint ``at_step`` is on disk (the run stops there, as a killed run would)."""
    save = ckpt_lib.Checkpointer.save

    def save_then_interrupt(self, step, *args, **kwargs):
        save(self, step, *args, **kwargs)
        if step == at_step:
            raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_lib.Checkpointer, "save", save_then_interrupt)


def use_programs(monkeypatch, programs: Any) -> None:
    """Runners started by a test (or by the CLI) use already compiled programs (a reference run's
    ``runner.programs()``), after checking that they were asked for the same run: same config, same chunks."""
    compile_ = Runner.compile

    def compile(self, need_init=True):
        self.use_programs(programs)
        return compile_(self, need_init)

    monkeypatch.setattr(Runner, "compile", compile)
