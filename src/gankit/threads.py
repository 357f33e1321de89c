"""How many CPU threads the training step runs on.

PyTorch runs each operation on one thread per core and waits for all of them at its end. When other programs keep
some of the cores busy, every operation waits for those cores' turns, and training slows down far more than the
cores' share: beside a one-core busy loop, two Zen 4 cores trained DCGAN-64 at 45.5 img/s on two threads and 79.8
on one (README, Performance). `ThreadTuner` finds the faster count while training. Now and then (after 10 s of
training, then at intervals that double up to 10 minutes while nothing changes, and no sooner than keeps the time
lost to slower counts to `PROBE_SHARE` of the training; soon after iterations slow down), a probe runs each of the
next iterations on the current count, or a quarter of it fewer or more (at least one thread; at most the count the
run started with), drawn at random per iteration so that every count sees the same mix of iterations (a strategy's
D-only and G-only iterations, critic bursts); once each count has `PROBE_SAMPLES` iterations and `PROBE_SECONDS` of
them of the kind of iteration seen most, the count whose median on them is faster than the current one's by `GAIN`
is kept; a count clearly slower after two iterations is dropped from the probe at once. On fewer threads than it
started with, it also watches how idle the cores are during its iterations (Linux: /proc/stat): once about a core
more has been idle than in the first seconds after the last probe (other programs left), it probes again, instead of
waiting minutes for the next scheduled probe (free cores slow nothing down, so the slowdown watch cannot tell). Each
such probe that changes nothing doubles the wait before the next (10 s, 20 s...): load that comes and goes every
few seconds would otherwise bring probe after probe where more threads do not help (a container's CPU quota).

It runs only where the count is gankit's to choose: a CPU, one process (torchrun sets OMP_NUM_THREADS=1), no
OMP_NUM_THREADS / MKL_NUM_THREADS or `train.threads` from the user, not `--deterministic` (a different count can
change the last bits of a sum, so a run would no longer repeat exactly)."""

import os
import random
import statistics
from collections import deque
from typing import Callable, Hashable

import torch

FIRST_PROBE_S = 10.0  # seconds of training before the first probe (and after a change)
MAX_INTERVAL_S = 600.0  # the longest wait between two probes (unless a probe's cost asks for longer: PROBE_SHARE)
PROBE_SAMPLES = 5  # iterations each count runs in a probe, at least ...
PROBE_SECONDS = 1.0  # ... and at least this many seconds of them
GAIN = 0.05  # another count is kept when its median iteration is this much faster
PROBE_SHARE = 0.02  # after a probe that changed nothing, the next waits until its cost is this share of the training
CLEARLY_SLOWER = 1.2  # a count whose first two iterations are both this much slower than the current one's median
# is out of the probe at once (on an idle machine, one thread fewer is that much slower: its iterations are the cost)
SLOWDOWN = 1.25  # recent iterations this much slower than the last probe found: probe again soon
RECENT = 9  # iterations whose median is watched for a slowdown
FREED = 0.75  # on fewer threads than at the start: cores (per thread a probe would add) idle over IDLE_WINDOW_S of
# iterations beyond those idle in the first IDLE_WINDOW_S after the last probe: probe again soon (neighbours left)
IDLE_WINDOW_S = 2.0


def idle_core_seconds() -> float | None:
    """Seconds the cores this process may run on have spent idle (or waiting for I/O) since boot, from Linux's
    /proc/stat; None where there is no such file."""
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        ticks = 0
        with open("/proc/stat", encoding="utf-8") as f:
            for line in f:
                if not line.startswith("cpu"):
                    break
                name, *fields = line.split()
                if name != "cpu" and (cores is None or int(name[3:]) in cores):
                    ticks += int(fields[3]) + int(fields[4])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def usable_cores(fallback: int = 1) -> int:
    """The cores this process may run on (its affinity, where the OS has one), else the machine's, else `fallback`."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or fallback


def user_chose_threads() -> bool:
    """The user (or torchrun) fixed the thread count through the environment."""
    return any(os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"))


def tuner_for(chosen: int | None, device: torch.device, deterministic: bool, seed: int) -> "ThreadTuner | None":
    """A tuner starting from the current count where the count is gankit's to choose (module docstring), else None.
    `chosen` is train.threads."""
    from gankit import distributed

    most = torch.get_num_threads()
    if (chosen is not None or device.type != "cpu" or deterministic or distributed.world_size() > 1
            or user_chose_threads() or most < 2):
        return None
    return ThreadTuner(most, seed=seed)


class ThreadTuner:
    """Call `before_iteration()` and `after_iteration(seconds, kind)` around each training iteration (its own time,
    not the epoch ends' writings; `settle()` before those); `after_iteration` returns a message for people when it
    changes the count.
    `kind` tells iterations of different work apart (the trainer's: batches taken, D and G updates made): a probe
    compares counts on the kind it saw most, like with like. `idle_seconds` reads the cores' idle seconds so far
    (None: not known). (The trainer puts back the count it started with when the run ends.)"""

    def __init__(self, most: int, set_threads: Callable[[int], None] = torch.set_num_threads, seed: int = 0,
                 idle_seconds: Callable[[], float | None] = idle_core_seconds):
        self.most = self.current = self.applied = most
        self.set_threads = set_threads
        self.rng = random.Random(seed)  # its own: the training's random streams stay as they are
        self.trained = 0.0  # seconds of iterations seen
        self.interval = FIRST_PROBE_S
        self.next_probe = FIRST_PROBE_S
        self.probe: dict[Hashable, dict[int, list[float]]] | None = None  # kind -> count -> seconds, while probing
        self.arms: list[int] = [most]  # the counts a probe draws from
        self.arm = most  # the count of the iteration under way
        self.recent: deque[float] = deque(maxlen=RECENT)  # the current count's latest iterations of `baseline_kind`
        self.baseline: float | None = None  # the current count's median in the last probe ...
        self.baseline_kind: Hashable = None  # ... on iterations of this kind
        self.probes = 0  # probes started
        self.idle_seconds = idle_seconds
        self.idle_start: float | None = None  # the cores' idle seconds when the iteration under way started
        self.idle_level: float | None = None  # cores idle on the current count in the first IDLE_WINDOW_S after a probe
        self.idle_window = [0.0, 0.0]  # idle core-seconds and seconds of iterations, until IDLE_WINDOW_S
        self.idle_wait = 0.0  # `trained` before which idle cores bring no probe ...
        self.idle_backoff = 0.0  # ... this long after a probe: doubled by each one they brought that changed nothing
        self.idle_probe = False  # the probe under way came from idle cores

    def _step(self) -> int:
        return max(1, round(self.current / 4))  # on many cores, steps of one thread would each gain too little

    @property
    def probing(self) -> bool:
        return self.probe is not None

    def _apply(self, n: int) -> None:
        if n != self.applied:
            self.set_threads(n)
            self.applied = n

    def settle(self) -> None:
        """Back to the current count for work between iterations (epoch ends: FID/KID, writing), should a probe be
        under way; the next iteration takes its count again."""
        self._apply(self.current)

    def before_iteration(self) -> None:
        self.arm = self.rng.choice(self.arms) if self.probe is not None else self.current
        self._apply(self.arm)
        watch = self.probe is None and self.current < self.most  # (idle cores matter only where more may go)
        self.idle_start = self.idle_seconds() if watch else None

    def _idle_during(self) -> float | None:
        """The cores' idle seconds during the iteration that just ended, where watched and known."""
        if self.idle_start is None:
            return None
        end = self.idle_seconds()
        return None if end is None else max(0.0, end - self.idle_start)

    def after_iteration(self, seconds: float, kind: Hashable = None) -> str | None:
        self.trained += seconds
        idle = self._idle_during()
        if self.probe is not None:
            samples = self.probe.setdefault(kind, {n: [] for n in self.arms})
            samples[self.arm].append(seconds)
            mine = samples[self.current]
            if len(mine) >= 2:  # a count clearly slower after two iterations is not tried further (probes cost less)
                typical = statistics.median(mine)
                self.arms = [n for n in self.arms if n == self.current or len(samples[n]) < 2
                             or min(samples[n]) <= CLEARLY_SLOWER * typical]
                if self.arms == [self.current]:
                    return self._decide({self.current: mine}, kind)
            most_seen, by_count = max(self.probe.items(), key=lambda item: sum(map(len, item[1].values())))
            if all(len(by_count[n]) >= PROBE_SAMPLES and sum(by_count[n]) >= PROBE_SECONDS for n in self.arms):
                return self._decide({n: by_count[n] for n in self.arms}, most_seen)
            return None
        if kind == self.baseline_kind:
            self.recent.append(seconds)
        slowed = (self.baseline is not None and len(self.recent) == RECENT
                  and statistics.median(self.recent) > SLOWDOWN * self.baseline)
        freed = False
        if idle is not None:
            self.idle_window[0] += idle
            self.idle_window[1] += seconds
            if self.idle_window[1] >= IDLE_WINDOW_S:
                idle_cores = self.idle_window[0] / self.idle_window[1]
                if self.idle_level is None:  # (measured over seconds: /proc/stat counts in hundredths)
                    self.idle_level = idle_cores
                # (other load that comes and goes every few seconds, while more threads do not help, e.g. under a
                # container's CPU quota, would bring probe after probe: after each that changes nothing, they wait
                # twice as long)
                freed = idle_cores >= self.idle_level + FREED * self._step() and self.trained >= self.idle_wait
                self.idle_window = [0.0, 0.0]
        if slowed:
            self.interval = FIRST_PROBE_S
        if slowed or freed or self.trained >= self.next_probe:
            self.idle_probe = freed and not slowed and self.trained < self.next_probe
            step = self._step()
            self.arms = [n for n in (self.current - step, self.current, self.current + step) if 1 <= n <= self.most]
            self.probe = {}
            self.probes += 1
        return None

    def _probe_cost(self) -> float:
        """Seconds the probe's iterations on other counts took beyond the current count's median (of their kind)."""
        cost = 0.0
        for by_count in self.probe.values():
            if by_count.get(self.current):
                typical = statistics.median(by_count[self.current])
                cost += sum(max(0.0, t - typical) for n, s in by_count.items() if n != self.current for t in s)
        return cost

    def _decide(self, by_count: dict[int, list[float]], kind: Hashable) -> str | None:
        medians = {n: statistics.median(s) for n, s in by_count.items()}
        cost = self._probe_cost()
        self.probe = None
        self.recent.clear()
        best = min(medians, key=medians.get)
        before = self.current
        if best != before and medians[best] < (1 - GAIN) * medians[before]:
            self.current, self.interval = best, FIRST_PROBE_S
        else:  # and no sooner than its cost allows, even past the longest wait (slow iterations, e.g. seed 004's
            # bursts of 100 critic batches: each one on a slower count costs seconds); a slowdown still probes at once
            self.interval = max(min(2 * self.interval, MAX_INTERVAL_S), cost / PROBE_SHARE)
        self.next_probe = self.trained + self.interval
        if self.current != before:
            self.idle_backoff = 0.0
        elif self.idle_probe:
            self.idle_backoff = max(FIRST_PROBE_S, 2 * self.idle_backoff)
        self.idle_wait, self.idle_probe = self.trained + self.idle_backoff, False
        self.baseline, self.baseline_kind = medians[self.current], kind
        self.idle_level, self.idle_window = None, [0.0, 0.0]
        self._apply(self.current)
        if self.current == before:
            return None
        why = "other programs seem to be using the cores" if self.current < before else "cores are free again"
        return (f"training on {_threads(self.current)} instead of {before}: {_times(medians[before] / medians[self.current])} "
                f"faster now ({why}; --threads (train.threads) fixes the count)")


def _times(ratio: float) -> str:
    """A speed ratio as said: 1.67x, but 40x (a busy core's median makes large ones noisy beyond their digits)."""
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.2f}x"


def _threads(n: int) -> str:
    return f"{n} CPU thread{'' if n == 1 else 's'}"
