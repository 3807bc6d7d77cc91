"""The Ray executor: each task becomes a Ray task with its resource request.

Imported only when `executor: ray` is chosen (Ray is the optional `robustlab[ray]` extra).
With no address it starts an embedded local Ray instance (shut down again on `close`);
with an address (``auto``, ``HOST:PORT`` or ``ray://HOST:10001``) it joins that cluster.
A task whose worker dies is rerun by Ray up to `max_retries` times; an exception raised by
the task itself is not retried (it would fail the same way) and comes back as `Done.error`.
Workers need robustlab (and any plugin modules) installed, and the data sets reachable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from robustlab.core.errors import ConfigError, RobustlabError
from robustlab.experiment.executors.base import Done, Resources, describe

try:
    import ray
    from ray.exceptions import RayError, RayTaskError
except ImportError:  # pragma: no cover - exercised where the extra is missing
    ray = None


class RayExecutor:
    """Tasks on a Ray cluster; `share` puts a value in the object store once for many tasks."""

    name = "ray"

    def __init__(self, address: str | None = None, local_cpus: int | None = None, max_retries: int = 3) -> None:
        if ray is None:
            raise ConfigError("executor 'ray' needs Ray: pip install 'robustlab[ray]'")
        self.max_retries = max_retries
        self._owns = False
        if not ray.is_initialized():
            try:
                ray.init(
                    address=address,
                    num_cpus=local_cpus if address is None else None,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                    configure_logging=True,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                raise ConfigError(f"cannot start or join {where}: {describe(exc)}") from None
            self._owns = True
        self._refs: dict[Any, Any] = {}
        self._ready: list[Any] = []
        self._remotes: dict[tuple, Any] = {}

    def share(self, value: Any) -> Any:
        return ray.put(value)

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        tag: Any,
        resources: Resources = Resources(),
        priority: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        key = (fn, resources.num_cpus, resources.num_gpus)
        if key not in self._remotes:
            self._remotes[key] = ray.remote(
                num_cpus=resources.num_cpus, num_gpus=resources.num_gpus,
                max_retries=self.max_retries, retry_exceptions=False,
            )(fn)
        self._refs[self._remotes[key].remote(*args)] = tag

    def pending(self) -> int:
        return len(self._refs)

    def next_done(self) -> Done:
        if not self._refs:
            raise RobustlabError("next_done() with no task pending")
        if not self._ready:  # wait for one, then take every other one already finished too
            refs = list(self._refs)
            ray.wait(refs, num_returns=1)
            self._ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        ref = self._ready.pop(0)
        tag = self._refs.pop(ref)
        try:
            return Done(tag, value=ray.get(ref))
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            return Done(tag, error=describe(cause) if isinstance(cause, BaseException) else describe(exc))
        except RayError as exc:  # the worker died more often than max_retries, or the node went away
            return Done(tag, error=describe(exc))

    def close(self) -> None:
        for ref in list(self._refs):
            ray.cancel(ref, force=True)
        self._refs.clear()
        self._ready.clear()
        if self._owns:
            ray.shutdown()
            self._owns = False
