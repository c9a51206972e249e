"""dask.distributed, the optional extra (``pip install 'napari-vaeedof[distributed]'``): which
``scheduler`` values the API and the CLI take, and a client for a scheduler's address.

``fuse_stack(..., scheduler=...)`` and ``napari-vaeedof batch --scheduler`` take a dask scheduler
name, a ``distributed.Client``, or the address of a running scheduler (``tcp://host:8786``);
for an address a client is connected for the duration of the call and closed after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

#: dask's own scheduler names (dask.base.named_schedulers), which are not addresses.
SCHEDULER_NAMES = ("sync", "synchronous", "single-threaded", "threads", "threading",
                   "processes", "multiprocessing")  # fmt: skip
INSTALL = "pip install 'napari-vaeedof[distributed]'"


def is_address(scheduler) -> bool:
    """True for a scheduler address such as 'tcp://10.0.0.5:8786' or '10.0.0.5:8786'."""
    return isinstance(scheduler, str) and scheduler not in SCHEDULER_NAMES and ":" in scheduler


def check_scheduler(scheduler) -> None:
    """A one-line ValueError for a scheduler dask would not take (before any work)."""
    if scheduler is None or callable(scheduler) or is_address(scheduler):
        return
    if isinstance(scheduler, str) and scheduler in SCHEDULER_NAMES:
        return
    if hasattr(scheduler, "get") and hasattr(scheduler, "submit"):  # a distributed.Client
        return
    raise ValueError(f"scheduler must be one of {', '.join(SCHEDULER_NAMES)}, a "
                     f"distributed.Client or a scheduler address like tcp://host:8786; got "
                     f"{scheduler!r}")


@contextmanager
def connect(scheduler) -> Iterator:
    """What dask's ``compute(scheduler=...)`` takes: a name or a client as given; for an
    address, a `distributed.Client` connected to it (closed on exit). ValueError with what to
    do when `distributed` is missing or the scheduler cannot be reached."""
    check_scheduler(scheduler)
    if not is_address(scheduler):
        yield scheduler
        return
    try:
        from distributed import Client
    except ImportError:
        raise ValueError(f"A scheduler address ({scheduler}) needs dask.distributed: "
                         f"{INSTALL}") from None
    try:
        client = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"No dask scheduler answers at {scheduler} ({exc}); start one "
                         f"(`dask scheduler`, or distributed.LocalCluster) or fix the "
                         f"address.") from None
    with client:
        yield client
