"""Executors of an experiment's tasks: in-process (`local`, the default) or on Ray (`ray`).

`make_executor(spec)` builds the one an `ExecutorSpec` names from `EXECUTORS`; Ray is imported
only then. A plugin adds an executor with ``EXECUTORS.register(name, factory)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from robustlab.experiment.executors.base import EXECUTORS, Done, Executor, Resources, describe
from robustlab.experiment.executors.local import LocalExecutor

if TYPE_CHECKING:
    from robustlab.experiment.spec_parts import ExecutorSpec


def _local(spec: ExecutorSpec, debug: bool) -> Executor:
    return LocalExecutor(debug=debug)


def _ray(spec: ExecutorSpec, debug: bool) -> Executor:
    from robustlab.experiment.executors.ray_executor import RayExecutor  # Ray only when chosen

    return RayExecutor(spec.address, spec.local_cpus, spec.max_retries, spec.connect_timeout)


EXECUTORS.register("local", _local)
EXECUTORS.register("ray", _ray)


def make_executor(spec: ExecutorSpec, debug: bool = False) -> Executor:
    """The executor `spec` names (`debug`: the local executor re-raises task errors)."""
    return EXECUTORS.get(spec.name)(spec, debug)


__all__ = ["EXECUTORS", "Done", "Executor", "LocalExecutor", "Resources", "describe", "make_executor"]
