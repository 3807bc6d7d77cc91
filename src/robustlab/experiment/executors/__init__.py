"""Executors of an experiment's tasks: in-process (`local`, the default) or on Ray (`ray`).

`make_executor(spec)` builds the one an `ExecutorSpec` names; Ray is imported only then.
"""

from __future__ import annotations

from robustlab.experiment.executors.base import Done, Executor, Resources, describe
from robustlab.experiment.executors.local import LocalExecutor
from robustlab.experiment.spec_parts import ExecutorSpec


def make_executor(spec: ExecutorSpec, debug: bool = False) -> Executor:
    """The executor `spec` names (`debug`: the local executor re-raises task errors)."""
    if spec.name == "ray":
        from robustlab.experiment.executors.ray_executor import RayExecutor

        return RayExecutor(spec.address, spec.local_cpus, spec.max_retries, spec.connect_timeout)
    return LocalExecutor(debug=debug)


__all__ = ["Done", "Executor", "LocalExecutor", "Resources", "describe", "make_executor"]
