"""Several processes, one training: torchrun + DistributedDataParallel (DDP).

`torchrun --nproc_per_node N -m gankit train ...` starts N copies of the same command and sets
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in each one's environment (for several
machines, torchrun's --nnodes and --rdzv-* options do the rendezvous; nothing here is home-made).
`process_group` joins the copies into one process group: NCCL on GPUs (each process on
cuda:LOCAL_RANK), gloo on CPU. Without those variables (or with WORLD_SIZE=1) every function here
is the identity or a no-op, so single-process code paths stay exactly as they were.

Equivalence by construction: `train.batch_size` is the GLOBAL batch. Every rank draws the random
numbers of the whole global batch with the same seeded generators (batch indices, flip mask, noise,
and every per-sample draw of the tricks: DiffAugment's parameters, instance noise, the gradient
penalty's mixing weights; see `per_sample`) and keeps its own slice (`shard`); DDP averages the gradients of the ranks' slices. So N ranks x B/N
images compute what one process x B computes (exactly so for a model without BatchNorm, whose
per-sample outputs do not depend on the rest of the batch).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import inspect
import os
import signal
from typing import Callable, Iterator, TypeVar

import torch
from torch import nn

from gankit import console, launch, threads
from gankit.errors import ConfigError, GankitError

# Rank 0 alone writes samples and computes FID while the others wait in their next collective.
_TIMEOUT = datetime.timedelta(hours=1)


# in gankit.launch (no torch: `gankit compare` says how to resume a run), here too where they were
launched, run_option, resume_command = launch.launched, launch.run_option, launch.resume_command


def is_initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    """This process's rank: from the process group, else from torchrun's RANK (before init / after teardown), else 0."""
    if is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0")) if launched() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """True on the process that writes logs, samples and checkpoints (rank 0, or the only process)."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """The device of this process: cuda:LOCAL_RANK under torchrun with CUDA, else `device` unchanged."""
    if is_initialized() and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join torchrun's process group for the duration of the block (when launched by torchrun and not
    already joined); tear down only the group this call created."""
    if not launched() or is_initialized():
        yield
        return
    if device.type == "mps":
        raise ConfigError("torchrun with --device mps is not supported (PyTorch's gloo backend does not run on Apple "
                          "GPUs): train in one process with --device mps, or under torchrun with --device cpu")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        store, rank_, size = next(torch.distributed.rendezvous("env://", timeout=_TIMEOUT))
        store = torch.distributed.PrefixStore(f"gankit/{_launch_token(store, rank_, size)}", store)
        torch.distributed.init_process_group(backend=backend, store=store, rank=rank_, world_size=size,
                                             timeout=_TIMEOUT)
    except RuntimeError as e:  # DistNetworkError, gloo's and NCCL's connection failures
        raise GankitError(f"torchrun's processes could not connect ({str(e).splitlines()[0][:200]}): check that every "
                          "machine reaches the others at the address and port given to torchrun") from None
    global _says_the_loss
    _says_the_loss = None
    try:
        yield
        barrier()  # every rank is done before any tears down (a rank that fails is stopped by torchrun)
    except BaseException as e:
        lost = lost_a_peer(e)
        if lost or console.speaks_on_its_machine():  # (a process that says its own error, or one that lost a peer)
            _claim_the_line(store, lost)
        raise
    finally:
        torch.distributed.destroy_process_group()


# Whether this process says its machine's line about a lost process (`says_the_loss`); None: it claimed none
_says_the_loss: bool | None = None
_CLAIM_TIMEOUT = datetime.timedelta(seconds=10)  # (a store on a machine that crashed: the first of each machine says it)


def _claim_the_line(store, lost: bool) -> None:
    """Claim, in torchrun's store (the launcher's: it outlives every process), the one line this machine's processes
    say when the launch stops: the first claim of a machine says it (`says_the_loss`).

    A process that stops on an error of its own, which it prints, claims before it leaves the group (only then do the
    others' collectives fail), so those that lose it as a peer add nothing to its error. Of the processes that lose
    a peer killed without a word, the first says it: also when the dead one was the process that speaks (`kill -9`,
    the out-of-memory killer). Then torchrun's SIGTERM to the survivors (it stops them once one failed) is ignored:
    the process is stopping, and the SIGTERM killed it before it said the line."""
    global _says_the_loss
    try:
        store.set_timeout(_CLAIM_TIMEOUT)
        _says_the_loss = store.add(f"lost/{os.environ.get('GROUP_RANK', '0')}", 1) == 1
    except RuntimeError:  # (the store's machine is gone)
        return
    if lost:
        with contextlib.suppress(ValueError):  # (not the main thread)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


def says_the_loss() -> bool:
    """Whether this process says that another process of the launch stopped (`lost_a_peer`): the first that claimed
    the line on its machine (`_claim_the_line`), else (no claim: out of the process group, a store out of reach) the
    first process of the machine."""
    return console.speaks_on_its_machine() if _says_the_loss is None else _says_the_loss


def lost_a_peer(e: BaseException) -> bool:
    """Whether `e` is a collective that failed because another torchrun process went away: not a bug of this
    process, and that process's own error says what happened."""
    if not launched():
        return False
    network_error = getattr(torch.distributed, "DistNetworkError", ())
    return isinstance(e, network_error) or any(
        s in str(e) for s in ("Connection closed by peer", "Connection reset by peer", "Broken pipe"))


def _launch_token(store, rank_: int, size: int) -> str:
    """A key prefix of this start of the processes in torchrun's store, the same in all of them.

    torchrun's store outlives its processes when it restarts them (--max-restarts), so the keys the dead ones wrote
    (their addresses) are still there: under the same keys, the new processes hang or fail to connect. torchrun's
    restart count cannot tell the starts apart across machines: a machine whose processes are restarted because
    another machine's failed keeps its count (two torchrun "machines" on one host hung this way). So process 0 draws
    a token, and every other process asks for it under a nonce of its own (a key no earlier start can have answered)
    and acknowledges it under a key holding the token (one no earlier start can have written); process 0 answers
    every question it sees until all have acknowledged."""
    import time
    import uuid

    if rank_ != 0:
        nonce = uuid.uuid4().hex
        store.set(f"gankit/ask/{rank_}", nonce)
        token = store.get(f"gankit/answer/{nonce}").decode()  # waits (up to the store's timeout) for process 0
        store.set(f"gankit/ack/{token}/{rank_}", "1")
        return token
    token, answered, waiting = uuid.uuid4().hex, set(), set(range(1, size))
    while waiting:
        for r in sorted(waiting):
            if store.check([f"gankit/ask/{r}"]):
                nonce = store.get(f"gankit/ask/{r}").decode()  # an earlier start's until process r asks
                if nonce not in answered:
                    store.set(f"gankit/answer/{nonce}", token)
                    answered.add(nonce)
            if store.check([f"gankit/ack/{token}/{r}"]):
                waiting.discard(r)
        if waiting:
            time.sleep(0.02)
    return token


def barrier() -> None:
    if is_initialized():
        if torch.distributed.get_backend() == "nccl":
            torch.distributed.barrier(device_ids=[torch.cuda.current_device()])
        else:
            torch.distributed.barrier()


# What the other ranks raise when rank 0 stopped with an error of its own (which it prints, once).
RANK0_STOPPED = "process 0 stopped: its error, on its machine's terminal, says why"
T = TypeVar("T")


def _collective_device() -> torch.device:
    """Where the group's collectives take their tensors: the process's GPU under NCCL, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.distributed.get_backend() == "nccl" else \
        torch.device("cpu")


def _rank0_verdict(ok: bool) -> bool:
    """Rank 0's `ok`, on every rank (a broadcast: every rank waits for rank 0 to send it)."""
    flag = torch.tensor([1 if ok else 0], dtype=torch.int32, device=_collective_device())
    torch.distributed.broadcast(flag, src=0)
    return bool(flag.item())


def from_main(make: Callable[[], T]) -> T:
    """`make()` run by rank 0 alone, its value sent to every rank (pickled; tensors on the CPU).

    What the run folder holds (its config, its checkpoints) is rank 0's to read: nodes that do not share rank 0's
    disk then still resume, or roll back, from it. When rank 0's `make()` fails, the others stop with a
    `GankitError` that only rank 0 would print, as in `main_first`."""
    if not is_initialized() or world_size() == 1:
        return make()
    box: list = [None]
    if is_main():
        try:
            box[0] = (True, make())
        except BaseException:
            with contextlib.suppress(Exception):  # the block's own error is the one to report
                torch.distributed.broadcast_object_list([(False, None)], src=0, device=_collective_device())
            raise
    torch.distributed.broadcast_object_list(box, src=0, device=_collective_device())
    ok, value = box[0]
    if not ok:
        raise GankitError(RANK0_STOPPED)
    return value


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. decoding the dataset into the cache), then the others (cache hits).

    When rank 0's block fails (a missing data folder, a bad image), it tells the others before it stops, and
    they stop with a `GankitError` that only rank 0 would print: the user reads rank 0's own error once,
    not, from every other rank, a lost connection that looks like a bug."""
    if not is_initialized() or world_size() == 1:
        yield
        return
    if not is_main():
        if not _rank0_verdict(True):
            raise GankitError(RANK0_STOPPED)
        yield
        return
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # the block's own error is the one to report
            _rank0_verdict(False)
        raise
    _rank0_verdict(True)


def local_batch(global_batch: int, n_ranks: int | None = None, resumed: bool = False) -> int:
    """Images per process in each step: the global `train.batch_size` split evenly over the ranks. A resumed run
    keeps its batch size (another --batch-size is refused as another config), so only process counts are offered."""
    n = world_size() if n_ranks is None else n_ranks
    if global_batch % n:
        sizes = sorted({b for b in (global_batch // n * n, (global_batch // n + 1) * n) if b > 0})
        counts = [str(k) for k in range(1, min(global_batch, 64) + 1) if global_batch % k == 0]
        nprocs = f"--nproc_per_node {', '.join(counts[:-1]) + ' or ' if len(counts) > 1 else ''}{counts[-1]}"
        fix = (f"the resumed run keeps its batch size: use {nprocs}" if resumed else
               f"use --batch-size {' or '.join(map(str, sizes))}, or {nprocs}")
        raise ConfigError(f"train.batch_size {global_batch} (the global batch) is not divisible by the {n} "
                          f"processes (WORLD_SIZE): {fix}")
    return global_batch // n


def shard(t: torch.Tensor) -> torch.Tensor:
    """This rank's slice along dim 0 of a tensor that holds the whole global batch (identity for one process)."""
    n = world_size()
    if n == 1:
        return t
    b = local_batch(t.shape[0], n)
    r = rank()
    return t[r * b:(r + 1) * b]


def per_sample(draw, n: int) -> torch.Tensor:
    """Random values for this rank's `n` samples: `draw(N)` makes them for all N = n x world_size samples of
    the global batch (the same on every rank, whose generators are seeded alike) and this rank keeps its
    slice. Sample i of the global batch so gets the same draw whatever the number of processes; for one
    process this is `draw(n)` itself."""
    return shard(draw(n * world_size()))


@contextlib.contextmanager
def machine_threads(device: torch.device) -> Iterator[int]:
    """On a CPU, let process 0 use the threads of every process on its machine while it works alone (FID/KID at
    epoch ends) and they wait for it in a collective, which takes no CPU: torchrun gives each process
    OMP_NUM_THREADS=1. At most the cores this process may run on (a process pinned to its own cores keeps its
    threads). Yields the thread count used."""
    own = torch.get_num_threads()
    cores = threads.usable_cores(fallback=own)
    n = min(own * int(os.environ.get("LOCAL_WORLD_SIZE", "1")), cores)
    if device.type != "cpu" or world_size() == 1 or n <= own:
        yield own
        return
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(own)


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The average of `t` over all ranks (for logged metrics); `t` itself for one process."""
    if not is_initialized():
        return t
    t = t.clone()
    torch.distributed.all_reduce(t)  # SUM: gloo has no AVG
    return t / world_size()


def max_over_ranks(value: float, device: torch.device) -> float:
    """The largest of `value` over all ranks (e.g. a clock, so that every rank takes the same decisions)."""
    return maxima([value], device)[0]


def maxima(values: list[float], device: torch.device) -> list[float]:
    """Each value's largest over all ranks, in one all-reduce (e.g. a stop flag as 0/1 and a clock)."""
    if not is_initialized():
        return list(values)
    t = torch.tensor(values, device=device, dtype=torch.float64)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return t.tolist()


def same_on_all_ranks(values: list[int], device: torch.device) -> bool:
    """Whether every rank holds the same integers (e.g. a dataset's size and fingerprint): the largest of them and of
    their negatives, over the ranks, in two all-reduces."""
    if not is_initialized():
        return True
    high = torch.tensor(values, dtype=torch.int64, device=device)
    low = -high
    torch.distributed.all_reduce(high, op=torch.distributed.ReduceOp.MAX)
    torch.distributed.all_reduce(low, op=torch.distributed.ReduceOp.MAX)
    return bool(torch.equal(high, -low))


class DDP(nn.parallel.DistributedDataParallel):
    """DistributedDataParallel whose state dict is the wrapped module's (no "module." prefix), so
    checkpoints are the same with and without DDP, and whose unknown attributes are the module's."""

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)


def wrap(module: nn.Module, device: torch.device, sync_batchnorm: bool = False) -> nn.Module:
    """`module` wrapped in DDP when running under torchrun (BatchNorm made SyncBatchNorm on request),
    else `module` itself.

    Buffers (BatchNorm running statistics, spectral-norm vectors) are not broadcast at each forward:
    that keeps forwards collective-free, so rank 0 may run the generator alone for samples and FID.
    Each rank keeps its own running statistics (rank 0's are saved; with SyncBatchNorm they agree).
    """
    if not is_initialized():
        return module
    if sync_batchnorm:
        if device.type != "cuda":
            raise ConfigError("train.sync_batchnorm needs CUDA GPUs (PyTorch's SyncBatchNorm does not run on CPU): "
                              "drop --set train.sync_batchnorm=true for CPU processes")
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    _grads_in_parameter_strides(module)
    # torch >= 2.14 renames broadcast_buffers to forward_sync_buffers (which still syncs once at init: harmless)
    params = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    no_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
    return DDP(module, device_ids=[device.index] if device.type == "cuda" else None,
               gradient_as_bucket_view=True, **no_sync)


def _grads_in_parameter_strides(module: nn.Module) -> None:
    """Make each gradient of a parameter with a size-1 dimension arrive in the parameter's own strides.

    A channels_last weight with one input or output channel (a grayscale image's first or last
    convolution) has the same bytes in NCHW and NHWC, so a kernel may return its gradient with the
    other strides for the size-1 dimension (cuDNN does, for a [32, 1, 4, 4] transposed-conv weight).
    DDP's reducer compares strides literally and warns "Grad strides do not match bucket view
    strides" (and copies). Such a gradient is re-viewed with the parameter's strides: no copy.
    """
    for p in module.parameters():
        if p.requires_grad and p.dim() > 1 and 1 in p.shape:
            p.register_hook(functools.partial(_restride, tuple(p.stride())))


def _restride(strides: tuple[int, ...], grad: torch.Tensor) -> torch.Tensor:
    if grad.layout != torch.strided or grad.stride() == strides:
        return grad
    if any(g != s for g, s, n in zip(grad.stride(), strides, grad.shape) if n != 1):
        return grad  # really another layout: DDP copies it into its bucket
    return grad.as_strided(grad.shape, strides)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (or the module itself)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module
