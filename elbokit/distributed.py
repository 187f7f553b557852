"""Multi-process training on ``torch.distributed`` (launched by ``torchrun``) and devices.

    torchrun --nproc-per-node N -m elbokit fit ...

``torchrun`` starts N copies of the command with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` in their environment; :func:`init` joins them into a
process group (gloo on CPU, nccl on CUDA, each rank on ``cuda:LOCAL_RANK``) only then, and
only when N > 1: one process, launched by torchrun or not, is the ordinary single-process
trainer, bit for bit.

Data parallelism as the trainer does it (see :class:`elbokit.training.Trainer`): every rank
holds the whole training set and the same model; step t of epoch e takes the same *global*
batch of ``batch_size`` examples as one process would (the :func:`~elbokit.training.epoch_order`
permutation), and rank r computes its contiguous slice (:meth:`Context.shard`) of it. Each
rank's loss is its slice's surrogate *sum* divided by the global batch size, so the sum of the
ranks' gradients, which :func:`all_reduce_gradients` forms, is the gradient of the global
batch mean: every rank then takes the same Adam step as a single process would (up to the
order of float additions).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from .errors import ConfigError

DEVICES = ("cpu", "cuda")
T = TypeVar("T")


def launched() -> bool:
    """Whether this process is one of several started by torchrun (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def launched_rank() -> int:
    """This process's rank as torchrun set it (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0")) if launched() else 0


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda`` as a torch device; under torchrun, ``cuda`` is ``cuda:LOCAL_RANK``.
    Refuses (one-line :class:`ConfigError`) a name it does not know and CUDA where there is none."""
    if name not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, not {name!r}")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else "no usable GPU"
        raise ConfigError(f"--device cuda: CUDA is not available here (torch {torch.__version__}, "
                          f"{build}); use --device cpu")
    index = int(os.environ.get("LOCAL_RANK", "0")) if launched() else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise ConfigError(f"--device cuda: local rank {index} needs GPU {index}, but only "
                          f"{torch.cuda.device_count()} are visible; start at most that many "
                          "processes per node")
    return torch.device("cuda", index)


@dataclass(frozen=True)
class Context:
    """This rank's place in a process group of ``world_size`` > 1 processes."""

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and prints."""
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of ``n`` items: ranks in order, sizes differing by at
        most one (the larger first), so rank 0's part is never empty when n >= 1; a rank's
        part is empty when n < world_size (the last batch of an epoch can be that small)."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))


_owned = False  # whether init() created the process group (and shutdown() should end it)


def init(device: str = "cpu") -> Context | None:
    """Join torchrun's process group when launched with more than one process (gloo for
    ``device="cpu"``, nccl for ``"cuda"``, after selecting ``cuda:LOCAL_RANK``); None
    otherwise. A group that already exists (made by the caller) is used as it is."""
    global _owned
    if not launched():
        return current()
    if not dist.is_available():  # pragma: no cover - torch builds without distributed
        raise ConfigError("this torch build has no torch.distributed; run one process")
    if not dist.is_initialized():
        target = resolve_device(device)
        if target.type == "cuda":
            torch.cuda.set_device(target)
            dist.init_process_group("nccl", device_id=target)
        else:
            dist.init_process_group("gloo")
        _owned = True
    return current()


def shutdown() -> None:
    """``destroy_process_group`` for a group :func:`init` created; nothing otherwise."""
    global _owned
    if _owned and dist.is_initialized():
        dist.destroy_process_group()
    _owned = False


def current() -> Context | None:
    """The process group's context when one with more than one rank exists, else None."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return Context(dist.get_rank(), dist.get_world_size())
    return None


def rank_seed(seed: int, rank: int, epoch: int = 0) -> int:
    """The torch seed of ``rank`` (``epoch`` > 0: re-seeding when a run resumes with another
    number of processes). A ``spawn_key`` keeps these streams apart from the
    ``SeedSequence([seed, epoch])`` of :func:`elbokit.training.epoch_order`."""
    state = np.random.SeedSequence(seed, spawn_key=(rank, epoch)).generate_state(2, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


# -- collectives ------------------------------------------------------------------------

def _cuda_ids(device: torch.device) -> list[int] | None:
    return [device.index] if device.type == "cuda" else None


def barrier(device: torch.device | None = None) -> None:
    """Wait until every rank gets here."""
    if device is not None and device.type == "cuda":
        dist.barrier(device_ids=_cuda_ids(device))
    else:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place (every rank gets the same sum); returns it."""
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(value: T) -> T:
    """Rank 0's ``value`` on every rank (pickled: for small things like a path)."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank (e.g. the RNG states)."""
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def broadcast_state(modules: Iterable[torch.nn.Module]) -> None:
    """Copy rank 0's parameters and buffers to every rank. Ranks build their models from the
    same seed, so this normally changes nothing; it guarantees the common start that the
    gradient averaging relies on (as DistributedDataParallel does when it wraps a model)."""
    with torch.no_grad():
        for module in modules:
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)


def all_reduce_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum the gradients of ``params`` over the ranks, one flat all-reduce per dtype.

    A parameter without a gradient on a rank (its slice was empty, or the objective did not
    touch it) contributes zeros; a presence flag travels in the same buffer, and a parameter
    that had a gradient on no rank keeps ``grad = None``, so Adam skips it exactly as a
    single process would (a zero gradient would still move it through Adam's momentum).
    """
    groups: dict[torch.dtype, list[torch.nn.Parameter]] = {}
    for p in params:
        groups.setdefault(p.dtype, []).append(p)
    for dtype, group in groups.items():
        device = group[0].device
        flags = torch.tensor([p.grad is not None for p in group], dtype=dtype, device=device)
        flat = torch.cat([*(p.grad.reshape(-1) if p.grad is not None
                            else torch.zeros(p.numel(), dtype=dtype, device=device) for p in group),
                          flags])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p, present in zip(group, flat[-len(group):].tolist(), strict=True):
            n = p.numel()
            if present > 0:
                p.grad = flat[offset:offset + n].view_as(p)
            offset += n


def sync_buffers(buffers: list[torch.Tensor], weight: float, device: torch.device) -> None:
    """Make the (estimator's) buffers equal on every rank after a step, as one process
    would have left them.

    Floating buffers become the example-weighted mean over the ranks (``weight`` = this
    rank's share of the global batch): that is exact for running means such as REINFORCE's
    moving-average baseline, whose update ``a <- d a + (1 - d) mean(f)`` is linear in the
    batch mean and starts from the same ``a`` on every rank. Other buffers (step counters,
    flags) take rank 0's value; rank 0's slice is never empty, so it has always stepped.
    """
    if not buffers:
        return
    main = dist.get_rank() == 0
    flat = torch.cat([b.detach().reshape(-1).to(device=device, dtype=torch.float64)
                      * (weight if b.is_floating_point() else float(main)) for b in buffers])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    with torch.no_grad():
        for b in buffers:
            n = b.numel()
            b.copy_(flat[offset:offset + n].to(b.dtype).reshape(b.shape))
            offset += n


def on_rank_zero(context: Context | None, action: Callable[[], T]) -> T | None:
    """Run ``action`` on rank 0 only (e.g. create the run directory) while the others wait;
    if it raises, rank 0 re-raises and the others raise :class:`ConfigError` too, so no rank
    goes on to wait forever in a collective for a rank that gave up."""
    if context is None:
        return action()
    failure: Exception | None = None
    result: T | None = None
    if context.is_main:
        try:
            result = action()
        except Exception as e:  # reported to the other ranks, then re-raised
            failure = e
    message = broadcast_object(None if failure is None else str(failure))
    if failure is not None:
        raise failure
    if message is not None:
        raise ConfigError(f"rank 0 failed: {message}")
    return result
