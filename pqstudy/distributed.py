"""Data-parallel training across processes started by ``torchrun``: who this process is, the process group, and the
few collectives training needs beyond DistributedDataParallel's gradient averaging.

``torchrun`` (torch.distributed.run) starts one process per device and tells each who it is through the environment:
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous point ``MASTER_ADDR`` / ``MASTER_PORT`` (with
``--rdzv-backend c10d`` it finds them itself and still sets them for its workers). :func:`world_from_env` reads them
without starting anything, so a bad launch fails before any data is loaded; :func:`start` joins the process group
(NCCL on GPUs, gloo on CPUs); :func:`stop` waits for every rank (a barrier: without it, 2 of 14 gloo runs crashed at
teardown) and leaves the group. A plain ``python`` process is world size 1: every function here is then a no-op.

Everything a rank sends to another is tensors; a state dict travels as a ``torch.save`` byte string and is read
back with ``weights_only=True`` (:func:`broadcast_state`), so no rank ever unpickles code.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from pqstudy.runio import plain

ENV_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """A data-parallel launch that cannot work: the message names the variable or setting and what to do."""


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel ranks (world size 1: a plain single process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes the run directory and evaluates."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1


SINGLE = World()


def _env_int(name: str, default: int | None) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        if default is None:
            raise DistributedError(f"{name} is not set: start data-parallel training with torchrun, which sets "
                                   f"{', '.join(ENV_VARIABLES)}")
        return default
    try:
        return int(text)
    except ValueError:
        raise DistributedError(f"{name}={text!r}: expected an integer (torchrun sets it)") from None


def world_from_env() -> World:
    """The world ``torchrun`` describes in the environment (``SINGLE`` when ``WORLD_SIZE`` is unset or 1); starts
    nothing. A world size > 1 without the rest of the launch (``RANK``, ``LOCAL_RANK``, the rendezvous point
    ``MASTER_ADDR``/``MASTER_PORT``) is a ``DistributedError`` that says what is missing."""
    size = _env_int("WORLD_SIZE", 1)
    if size < 1:
        raise DistributedError(f"WORLD_SIZE={size}: must be >= 1")
    if size == 1:
        return SINGLE
    rank, local_rank = _env_int("RANK", None), _env_int("LOCAL_RANK", None)
    if not 0 <= rank < size:
        raise DistributedError(f"RANK={rank}: must be in 0 … {size - 1} for WORLD_SIZE={size}")
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise DistributedError(
            f"WORLD_SIZE={size} but no rendezvous: {' and '.join(missing)} not set. Launch with torchrun "
            "(--standalone on one machine; on several: --nnodes N --rdzv-backend c10d --rdzv-endpoint HOST:PORT)")
    return World(rank=rank, size=size, local_rank=local_rank)


def check_world(world: World, batch_size: int, device: torch.device, field: str = "train.batch_size") -> None:
    """Fail before any work when ``world`` cannot train a global batch of ``batch_size`` (the config's ``field``)
    on ``device``."""
    if batch_size % world.size:
        nearest = world.size * max(batch_size // world.size, 1)
        raise DistributedError(
            f"{field}={batch_size} is not divisible by the world size {world.size}: every rank takes "
            f"batch_size / world_size images per step (e.g. {field}={nearest})")
    if world.parallel and device.type == "cuda" and world.local_rank >= torch.cuda.device_count():
        raise DistributedError(f"LOCAL_RANK={world.local_rank} but only {torch.cuda.device_count()} CUDA device(s) "
                               "are visible: start at most that many processes per node (--nproc-per-node)")


def launch(batch_size: int, device: torch.device, field: str = "train.batch_size") -> tuple[World, torch.device]:
    """This process's world (from torchrun's environment; one process without it) and its device (``cuda:LOCAL_RANK``
    under torchrun), checked against a global batch of ``batch_size`` (the config's ``field``) before any work: a
    bad launch is a ``DistributedError`` that says what to change. Starts nothing."""
    world = world_from_env()
    check_world(world, batch_size, device, field)
    if world.parallel and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    return world, device


def start(world: World, device: torch.device, timeout_minutes: float = 60.0) -> bool:
    """Join the process group of ``world`` (NCCL for CUDA, gloo otherwise); True when this call started it (and
    :func:`stop` should end it), False for a single process or a group the caller started already."""
    if not world.parallel or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.size,
                            timeout=timedelta(minutes=timeout_minutes))
    return True


def stop(started: bool) -> None:
    """Wait for every rank, then leave the process group, when :func:`start` started it."""
    if started and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def main_first(world: World):
    """Rank 0 runs the block first, the other ranks after it (e.g. rank 0 fills a cache file the others then read):
    one barrier, which the others reach before the block and rank 0 after it. A plain block for one process; every
    rank must enter it."""
    if world.parallel and not world.main:
        dist.barrier()
    yield
    if world.parallel and world.main:
        dist.barrier()


def active() -> bool:
    """Whether collectives reach other ranks (a process group with more than one member)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _comm_device() -> torch.device:
    """Where the backend wants tensors: NCCL only moves CUDA tensors."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place (moved to the backend's device and back when needed)."""
    if not active():
        return tensor
    comm = _comm_device()
    if tensor.device == comm:
        dist.all_reduce(tensor)
        return tensor
    moved = tensor.to(comm)
    dist.all_reduce(moved)
    tensor.copy_(moved)
    return tensor


def average_gradients_(parameters) -> None:
    """Average the ``.grad`` of ``parameters`` over the ranks in one collective (what DDP does for a module, for a
    module trained outside DDP: the discriminator, which runs on real and fake images before its backward)."""
    if not active():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    all_reduce_sum_(flat).div_(dist.get_world_size())
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def average_(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over the ranks, in place."""
    if active():
        all_reduce_sum_(tensor).div_(dist.get_world_size())
    return tensor


def broadcast_state(state, src: int = 0):
    """``state`` (tensors and plain types) of rank ``src`` on every rank: sent as ``torch.save`` bytes and loaded
    with ``weights_only=True``. Single process: ``state`` itself."""
    if not active():
        return state
    comm = _comm_device()
    if dist.get_rank() == src:
        buffer = io.BytesIO()
        torch.save(plain(state), buffer)
        payload = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
        size = torch.tensor([payload.numel()], dtype=torch.long)
    else:
        payload, size = None, torch.zeros(1, dtype=torch.long)
    size = size.to(comm)
    dist.broadcast(size, src)
    data = payload.to(comm) if payload is not None else torch.empty(int(size.item()), dtype=torch.uint8, device=comm)
    dist.broadcast(data, src)
    if dist.get_rank() == src:
        return state
    return torch.load(io.BytesIO(data.cpu().numpy().tobytes()), map_location="cpu", weights_only=True)
