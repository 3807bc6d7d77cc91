"""A plugin for the executor tests: FGSM variants that fail, crash or dawdle on purpose.

Listed under `plugins:` in a test experiment, it is imported on the driver and on every
worker, so the attacks below exist wherever a cell runs. A `marker` file makes a fault
happen once: the first call creates it and fails, later calls find it and run FGSM.
"""

from __future__ import annotations

import os
import time

from robustlab.attacks.fgsm import FGSM
from robustlab.attacks.registry import ATTACKS, register_attack


class _Faulty(FGSM):
    def __init__(self, eps: float, marker: str = "", sleep: float = 0.0, **kwargs) -> None:
        super().__init__(eps, **kwargs)
        self.marker = marker
        self.sleep = sleep

    def _first_call(self) -> bool:
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.close(fd)
        return True

    def _run(self, model, x, y, targets, criterion, generator):
        time.sleep(self.sleep)
        self._fault()
        return super()._run(model, x, y, targets, criterion, generator)

    def _fault(self) -> None:
        raise NotImplementedError


class FailOnce(_Faulty):
    """Raises RuntimeError on its first call (per marker file), then is FGSM."""

    name = "fail-once"

    def _fault(self) -> None:
        if self._first_call():
            raise RuntimeError("made to fail once")


class CrashOnce(_Faulty):
    """Kills its own process on the first call (a worker lost mid-task), then is FGSM."""

    name = "crash-once"

    def _fault(self) -> None:
        if self._first_call():
            os._exit(1)


class AlwaysFail(_Faulty):
    name = "always-fail"

    def _fault(self) -> None:
        raise RuntimeError("this cell always fails")


class Slow(_Faulty):
    """FGSM after `sleep` seconds."""

    name = "slow"

    def _fault(self) -> None:
        pass


FAULTS = (FailOnce, CrashOnce, AlwaysFail, Slow)
for _cls in FAULTS:
    if _cls.name not in ATTACKS:
        register_attack(_cls)
