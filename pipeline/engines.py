"""Where a sweep's trials run (`sweep.backend`), always through joblib's `Parallel`, so the sweep's code is
the same on every engine: `loky` (joblib's own processes on this machine), `dask` (a Dask cluster: the one at
`sweep.address`, or a local cluster of processes started for the sweep) or `ray` (a Ray cluster: the one at
`sweep.address`, or a local one). Every worker reads the feature set and writes its run folders under
`paths.cache` itself, so on a cluster that path must be storage every worker sees at the same path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from vidprobe.errors import ConfigError

BACKENDS = ("loky", "dask", "ray")


@dataclass
class Engine:
    n_jobs: int  # trials at once
    threads: int  # torch threads per trial
    where: str  # said when the sweep starts


@contextlib.contextmanager
def engine(backend: str, address: str | None, n_jobs: int) -> Iterator[Engine]:
    """joblib's backend set to `backend` while the sweep runs; a cluster started here stops after it."""
    from joblib import parallel_config

    cores = os.cpu_count() or 1
    if backend == "loky":
        with parallel_config(backend="loky"):
            yield Engine(n_jobs, max(1, cores // n_jobs), f"{n_jobs} processes on this machine")
        return
    if backend == "dask":
        with dask_client(address, n_jobs) as (client, where), parallel_config(backend="dask"):
            workers = len(client.scheduler_info()["workers"]) or n_jobs
            yield Engine(workers, 1 if address else max(1, cores // n_jobs), where)
        return
    if backend == "ray":
        with ray_cluster(address, n_jobs) as where, parallel_config(backend="ray"):
            yield Engine(n_jobs, 1 if address else max(1, cores // n_jobs), where)
        return
    raise ConfigError(f"sweep.backend: unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")


PACKAGES = {"dask": ("distributed", "dask's distributed"), "ray": ("ray", "ray")}  # module to import, its name


def check(backend: str) -> None:
    """A ConfigError naming the install when `backend`'s package is missing (before any work starts)."""
    import importlib.util

    if backend in PACKAGES and importlib.util.find_spec(PACKAGES[backend][0]) is None:
        raise missing(PACKAGES[backend][1], backend)


def missing(package: str, extra: str) -> ConfigError:
    return ConfigError(f"sweep.backend={extra} needs {package}: pip install 'vidprobe[{extra}]'")


@contextlib.contextmanager
def dask_client(address: str | None, n_jobs: int):
    """A `distributed.Client` of the cluster at `address`, else of a local cluster of `n_jobs` processes
    (one thread each: a trial sets its own torch threads)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise missing("dask's distributed", "dask") from None
    if address:
        try:
            client = Client(address, timeout="20s")
        except OSError as err:
            raise ConfigError(f"sweep.address: no Dask scheduler answers at {address} ({err})") from None
        with client:
            yield client, f"the Dask cluster at {address}"
        return
    local = LocalCluster(n_workers=n_jobs, threads_per_worker=1, processes=True, dashboard_address=None)
    with local as cluster, Client(cluster) as client:
        yield client, f"a local Dask cluster of {n_jobs} processes"


@contextlib.contextmanager
def ray_cluster(address: str | None, n_jobs: int):
    """Ray joined at `address`, else started here with `n_jobs` CPUs; joblib's "ray" backend registered."""
    try:
        import ray
        from ray.util.joblib import register_ray
    except ImportError:
        raise missing("ray", "ray") from None
    register_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else n_jobs, include_dashboard=False, log_to_driver=False)
    try:
        yield f"the Ray cluster at {address}" if address else f"a local Ray of {n_jobs} CPUs"
    finally:
        if started:
            ray.shutdown()
