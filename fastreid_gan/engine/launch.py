"""``launch()``: fastreid's multi-process launcher, also on machines without CUDA.

Same signature as ``fastreid.engine.launch``.  With CUDA each process drives one GPU and the processes
talk over NCCL; without CUDA ``num_gpus_per_machine`` is read as the number of CPU processes, which talk
over gloo.  fastreid's ``comm._LOCAL_PROCESS_GROUP`` is set exactly as fastreid does.
"""
from __future__ import annotations

import logging
import socket
from datetime import timedelta
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastreid.utils import comm

__all__ = ["launch", "find_free_port"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = timedelta(minutes=30)


def find_free_port() -> int:
    """A port the OS considers free now (another process may still grab it before we bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    args: Sequence[Any] = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> Any:
    """Run ``main_func(*args)`` in ``num_machines * num_gpus_per_machine`` processes (this call spawns this
    machine's share); with a world size of 1 it is called directly in this process.

    Args:
        num_gpus_per_machine: GPUs per machine with CUDA; CPU processes per machine without.
        dist_url: e.g. "tcp://127.0.0.1:8686"; "auto" or None picks a free local port (one machine only).
    """
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        return main_func(*args)
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError("dist_url 'auto' only works on one machine; pass tcp://<host of rank 0>:<port>")
        dist_url = f"tcp://127.0.0.1:{find_free_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logger.warning("file:// is not a reliable init_method in multi-machine jobs. Prefer tcp://")
    mp.spawn(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, tuple(args), timeout),
        daemon=False,
    )
    return None


def _distributed_worker(
    local_rank: int,
    main_func: Callable[..., Any],
    world_size: int,
    num_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: Sequence[Any],
    timeout: timedelta,
) -> None:
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        if num_per_machine > torch.cuda.device_count():
            raise RuntimeError(
                f"{num_per_machine} processes per machine requested but only {torch.cuda.device_count()} GPUs"
            )
        torch.cuda.set_device(local_rank)  # before NCCL init, so its communicator uses this GPU
    backend = "nccl" if use_cuda else "gloo"
    global_rank = machine_rank * num_per_machine + local_rank
    try:
        dist.init_process_group(
            backend=backend, init_method=dist_url, world_size=world_size, rank=global_rank, timeout=timeout
        )
    except Exception:
        logger.error("Process group URL: %s", dist_url)
        raise
    try:
        # a barrier right after init avoids a possible timeout in the first collective (fastreid does the same)
        comm.synchronize()
        if comm._LOCAL_PROCESS_GROUP is not None:
            raise RuntimeError("comm._LOCAL_PROCESS_GROUP is already set in a fresh worker")
        num_machines = world_size // num_per_machine
        for i in range(num_machines):
            ranks_on_i = list(range(i * num_per_machine, (i + 1) * num_per_machine))
            group = dist.new_group(ranks_on_i)  # every rank must create every group
            if i == machine_rank:
                comm._LOCAL_PROCESS_GROUP = group
        main_func(*args)
    finally:
        comm._LOCAL_PROCESS_GROUP = None
        dist.destroy_process_group()
