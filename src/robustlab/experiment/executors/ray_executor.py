"""The Ray executor: each task becomes a Ray task with its resource request.

Imported only when `executor: ray` is chosen (Ray is the optional `robustlab[ray]` extra).
With no address it starts an embedded local Ray instance (shut down again on `close`);
with an address (``auto``, ``HOST:PORT`` or ``ray://HOST:10001``) it joins that cluster.
A task whose worker dies is rerun by Ray up to `max_retries` times; an exception raised by
the task itself is not retried (it would fail the same way) and comes back as `Done.error`.
Workers need robustlab (and any plugin modules) installed, and the data sets reachable.

Ray retries an address that does not answer for minutes, so a ``HOST:PORT`` or
``ray://HOST:PORT`` address is probed first: a TCP connection and a gRPC (HTTP/2) handshake,
each within `connect_timeout` seconds; an address that fails either is one `ConfigError`.
"""

from __future__ import annotations

import logging
import socket
import time
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

    def __init__(self, address: str | None = None, local_cpus: int | None = None, max_retries: int = 3,
                 connect_timeout: float = 30.0) -> None:
        if ray is None:
            raise ConfigError("executor 'ray' needs Ray: pip install 'robustlab[ray]'")
        self.max_retries = max_retries
        self._owns = False
        if not ray.is_initialized():
            if address is not None:
                probe(address, connect_timeout)
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
        progress: Callable[..., None] | None = None,
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


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


def probe(address: str, timeout: float) -> None:
    """ConfigError unless the Ray address answers within `timeout` seconds: a TCP connection,
    then a gRPC server's reply (an HTTP/2 SETTINGS frame) to the HTTP/2 preface. Addresses
    without a port (``auto``, ``local``) are left to Ray."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    where = f"the Ray cluster at {address}"
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock:
            sock.settimeout(max(deadline - time.monotonic(), 0.1))
            sock.sendall(_HTTP2_PREFACE)
            header = b""
            while len(header) < 9:
                chunk = sock.recv(9 - len(header))
                if not chunk:
                    break
                header += chunk
    except TimeoutError:
        raise ConfigError(f"cannot join {where}: no answer within {timeout:g} s (see --connect-timeout)") from None
    except (OSError, ValueError, OverflowError) as exc:
        raise ConfigError(f"cannot join {where}: {describe(exc)}") from None
    if len(header) < 9 or header[3] != 0x4:
        raise ConfigError(f"cannot join {where}: it does not answer like a Ray cluster (no gRPC server there)")
