"""The CPU thread count: gankit.threads.ThreadTuner finds the faster count while training (fed here with the
iteration times a machine would give at each count), and the trainer applies it, `train.threads`, and puts the
count back at the end."""

from __future__ import annotations

import json
import random

import pytest
import torch

from conftest import tiny_layers
from gankit import threads
from gankit.threads import ThreadTuner


class Machine:
    """Iteration seconds at each thread count (`speed`, changeable mid-run), a +-`noise` fraction of jitter, the
    cores left idle while training on each count (`idle`, none unless given), and the counts the tuner set."""

    def __init__(self, speed: dict[int, float], noise: float = 0.0, seed: int = 1, idle: dict[int, float] | None = None):
        self.speed, self.noise, self.rng = speed, noise, random.Random(seed)
        self.idle = idle or {}
        self.idle_total = 0.0  # the cores' idle seconds so far
        self.set_calls: list[int] = []
        self.ran: list[int] = []  # each iteration's count

    def set_threads(self, n: int) -> None:
        self.set_calls.append(n)

    def tuner(self, most: int) -> ThreadTuner:
        return ThreadTuner(most, set_threads=self.set_threads, idle_seconds=lambda: self.idle_total)

    def run(self, tuner: ThreadTuner, seconds: float, per_iteration=None, kinds: int = 2) -> list[str]:
        """Train for `seconds` of iterations, of `kinds` kinds in turn; the messages the tuner gave."""
        said, start = [], tuner.trained
        i = 0
        while tuner.trained - start < seconds:
            tuner.before_iteration()
            self.ran.append(tuner.applied)
            t = self.speed[tuner.applied] * (per_iteration(i) if per_iteration else 1.0)
            t *= 1 + self.rng.uniform(-self.noise, self.noise)
            self.idle_total += self.idle.get(tuner.applied, 0.0) * t
            message = tuner.after_iteration(t, i % kinds)
            if message:
                said.append(message)
            i += 1
        return said


def test_fewer_threads_are_kept_when_they_train_faster():
    m = Machine({2: 0.2, 1: 0.12})
    tuner = m.tuner(2)
    assert m.run(tuner, threads.FIRST_PROBE_S - 1) == [] and m.set_calls == []  # no probe in the first seconds
    said = m.run(tuner, 10)
    assert tuner.current == 1 and m.set_calls[-1] == 1
    assert said == ["training on 1 CPU thread instead of 2: 1.67x faster now (other programs seem to be using the "
                    "cores; --threads (train.threads) fixes the count)"]



def test_a_large_ratio_is_said_without_decimals():
    """Another process hogging a core can make one count ~40x slower: "39.98x" claimed digits the noise does not have."""
    m = Machine({2: 3.998, 1: 0.1})
    tuner = m.tuner(2)
    said = m.run(tuner, 120)
    assert tuner.current == 1 and said[0].startswith("training on 1 CPU thread instead of 2: 40x faster now (")


def test_the_count_stays_when_fewer_threads_are_slower_and_probes_then_come_less_often():
    m = Machine({2: 0.2, 1: 0.4}, noise=0.02)
    tuner = m.tuner(2)
    assert m.run(tuner, 20 * 60, kinds=1) == []
    assert tuner.current == 2 and tuner.interval == threads.MAX_INTERVAL_S
    # probes at 10 s, then 20, 40, 80, 160 and 320 s later: 6 in 20 minutes, each two or three iterations on 1 thread
    on_one = m.ran.count(1)
    assert tuner.probes == 6 and 2 * 6 <= on_one <= 3 * 6


def test_a_probe_of_short_iterations_times_each_count_for_a_second_at_least():
    """5 iterations of 10 ms would be at the mercy of the noise: each count runs PROBE_SECONDS of them."""
    m = Machine({2: 0.01, 1: 0.011}, noise=0.02)  # one thread a little slower: tried to the end
    tuner = m.tuner(2)
    m.run(tuner, threads.FIRST_PROBE_S + 5, kinds=1)
    assert tuner.probes == 1 and not tuner.probing and tuner.current == 2
    on_one = m.ran.count(1)  # a second's worth at least, and then only until 2 threads have had theirs
    assert threads.PROBE_SECONDS / 0.011 <= on_one <= 1.5 * threads.PROBE_SECONDS / 0.01


@pytest.mark.parametrize("two, one", [(1.2, 2.2), (40.0, 70.0)])
def test_after_a_costly_probe_the_next_waits_until_its_cost_is_a_small_share_of_the_training(two, one):
    """Slow iterations (seconds each; tens of seconds for a burst of 100 critic batches) make each iteration a probe
    runs on a slower count cost seconds: the next probe waits, past MAX_INTERVAL_S where it must."""
    m = Machine({2: two, 1: one}, noise=0.02)
    tuner = m.tuner(2)
    m.run(tuner, threads.FIRST_PROBE_S, kinds=1)
    m.ran.clear()
    while tuner.probes == 1 and tuner.probing:
        m.run(tuner, 1, kinds=1)
    lost = m.ran.count(1) * (one - two)  # seconds beyond a 2-thread iteration
    assert lost >= 2 * (one - two) and tuner.interval >= lost / threads.PROBE_SHARE * 0.9 > 2 * threads.FIRST_PROBE_S


@pytest.mark.parametrize("pattern", ["steady", "alternating"])
def test_counts_equally_fast_within_the_noise_never_switch(pattern):
    """Within +-2% jitter the medians differ by less than GAIN; an iteration cost that alternates (a strategy's D-only
    and G-only halves) does not bias one count, since each iteration's count is drawn at random."""
    m = Machine({2: 0.2, 1: 0.2, 3: 0.2}, noise=0.02)
    tuner = m.tuner(3)
    said = m.run(tuner, 60 * 60, per_iteration=(lambda i: 3.0 if i % 2 else 1.0) if pattern == "alternating" else None)
    assert said == [] and tuner.current == 3
    assert tuner.probes == 10  # at 10 s, then 20, 40, 80, 160, 320 s and every 600 s later: no slowdown seen
    assert set(m.set_calls) == {2, 3}  # it probed one fewer (never more than the count it started with)


def test_a_slowdown_brings_the_next_probe_forward_and_free_cores_bring_the_count_back():
    m = Machine({2: 0.2, 1: 0.4})
    tuner = m.tuner(2)
    while tuner.probes < 4 or tuner.probing:  # probes at 10, 30, 70, 150 s or so: nothing to change
        m.run(tuner, 1)
    scheduled = tuner.next_probe  # a minute or more away
    assert tuner.current == 2 and scheduled - tuner.trained > 60
    m.speed = {2: 0.5, 1: 0.25}  # a neighbour takes a core
    said = m.run(tuner, 30)
    assert tuner.current == 1 and said[0].startswith("training on 1 CPU thread instead of 2: 2.00x faster now")
    switched_at = tuner.next_probe - threads.FIRST_PROBE_S
    assert switched_at < scheduled - 30, (switched_at, scheduled)  # long before the probe that was due
    m.speed = {2: 0.1, 1: 0.2}  # it leaves: one more thread is tried at a probe within a minute
    said = m.run(tuner, 60)
    assert tuner.current == 2 and said == ["training on 2 CPU threads instead of 1: 2.00x faster now (cores are free "
                                           "again; --threads (train.threads) fixes the count)"]


def test_cores_going_idle_bring_the_count_back_at_once_and_cores_idle_since_the_last_probe_do_not():
    m = Machine({2: 0.5, 1: 0.25})  # a neighbour keeps a core busy from the start: nothing idle on either count
    tuner = m.tuner(2)
    m.run(tuner, 30)
    assert tuner.current == 1 and not tuner.probing
    while tuner.probes < 4 or tuner.probing:  # backed off: the next scheduled probe is a minute or more away
        m.run(tuner, 1)
    # the cores' idleness on this count, measured after the probe; and as long after it as its cost asks
    m.run(tuner, max(2 * threads.IDLE_WINDOW_S, tuner.idle_wait - tuner.trained))
    scheduled = tuner.next_probe
    assert tuner.current == 1 and scheduled - tuner.trained > 30
    m.speed, m.idle = {2: 0.1, 1: 0.2}, {1: 1.0}  # it leaves: the second core idles while training on one thread
    left_at = tuner.trained
    said = m.run(tuner, 10)
    assert tuner.current == 2 and said[0].startswith("training on 2 CPU threads instead of 1: 2.00x faster now")
    assert tuner.next_probe - threads.FIRST_PROBE_S - left_at < 15 < scheduled - left_at - 45  # seconds, not minutes

    probes = []
    for idle in ({1: 1.0}, {}):  # one thread faster though the other core idles (the cores' own limit, not a
        m = Machine({2: 0.2, 1: 0.12}, idle=idle)  # neighbour's): that core idled at the last probe already
        tuner = m.tuner(2)
        m.run(tuner, 20 * 60, kinds=1)
        assert tuner.current == 1
        probes.append(tuner.probes)
    assert probes[0] == probes[1] == 7  # no early probe: the schedule's (10 s, 10 s after the switch, then doubling)


def test_idle_cores_that_come_and_go_while_more_threads_do_not_help_bring_fewer_and_fewer_probes():
    """Other load that comes and goes every few seconds on a machine where more threads are slower anyway (a
    container's CPU quota): each time a core idles, a probe could run; each that changes nothing doubles the wait
    for the next, so the time lost on the slower count stays small."""
    m = Machine({2: 0.6, 1: 0.3})
    tuner = m.tuner(2)
    m.run(tuner, 30)
    assert tuner.current == 1
    m.ran.clear()
    start, probes = tuner.trained, tuner.probes
    for i in range(120):  # 20 minutes: a core idle for 5 s, busy for 5 s
        m.idle = {1: 1.0} if i % 2 else {}
        m.run(tuner, 5)
    lost = m.ran.count(2) * (0.6 - 0.3)
    assert tuner.current == 1 and tuner.probes - probes > 5  # idle cores brought probes forward (the schedule: 4) ...
    assert lost <= 1.5 * threads.PROBE_SHARE * (tuner.trained - start)  # ... at a bounded cost


def test_the_cores_idle_seconds_come_from_proc_stat_where_linux_has_it():
    first = threads.idle_core_seconds()
    if first is None:
        pytest.skip("no /proc/stat")
    assert 0.0 < first <= threads.idle_core_seconds()


def test_a_probe_tries_a_quarter_of_the_count_either_side_within_one_and_the_starting_count():
    tuner = ThreadTuner(32, set_threads=lambda n: None)
    for current, arms in ((32, [24, 32]), (24, [18, 24, 30]), (6, [4, 6, 8]), (4, [3, 4, 5]), (2, [1, 2, 3]), (1, [1, 2])):
        tuner.current, tuner.probe, tuner.trained, tuner.next_probe = current, None, 0.0, 0.0
        tuner.after_iteration(0.1)
        assert tuner.probing and tuner.arms == arms


def test_the_tuner_runs_only_where_the_count_is_gankits_to_choose(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    cpu = torch.device("cpu")
    assert threads.tuner_for(None, cpu, False, 0).most == 4
    assert threads.tuner_for(2, cpu, False, 0) is None  # train.threads
    assert threads.tuner_for(None, torch.device("cuda"), False, 0) is None
    assert threads.tuner_for(None, cpu, True, 0) is None  # --deterministic: a run repeats exactly
    monkeypatch.setattr("gankit.distributed.world_size", lambda: 2)
    assert threads.tuner_for(None, cpu, False, 0) is None  # torchrun
    monkeypatch.setattr("gankit.distributed.world_size", lambda: 1)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, "3")
        assert threads.tuner_for(None, cpu, False, 0) is None
        monkeypatch.delenv(name)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert threads.tuner_for(None, cpu, False, 0) is None


def _counting_iterations(monkeypatch, slow_above: int | None = None) -> list[int]:
    """The thread count of each training iteration (of the classic strategy's: one G phase each); with
    `slow_above`, iterations on more threads take 30 ms more (a busy core's effect, made up so that the test does not
    depend on this machine's load)."""
    import time

    from gankit.train import Trainer

    seen = []
    real = Trainer._g_phase

    def g_phase(self, kept):
        n = torch.get_num_threads()
        seen.append(n)
        if slow_above is not None and n > slow_above:
            time.sleep(0.03)
        return real(self, kept)

    monkeypatch.setattr(Trainer, "_g_phase", g_phase)
    return seen


@pytest.fixture
def two_threads(monkeypatch):
    """Two threads, not fixed by the environment (conftest sets OMP_NUM_THREADS under pytest-xdist)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_training_moves_to_the_faster_count_logs_it_and_puts_the_count_back(image_folder, tmp_path, monkeypatch,
                                                                            two_threads, capsys):
    from gankit.train import run_training

    monkeypatch.setattr(threads, "FIRST_PROBE_S", 0.2)
    monkeypatch.setattr(threads, "PROBE_SECONDS", 0.05)
    seen = _counting_iterations(monkeypatch, slow_above=1)
    run = run_training(tiny_layers(image_folder, epochs=20, max_steps=40), tmp_path / "run")
    assert seen[0] == 2 and torch.get_num_threads() == 2  # (the last iterations may be a later probe's, on 2)
    said = capsys.readouterr().err
    assert " on cpu, 2 threads (fp32)" in said and "training on 1 CPU thread instead of 2" in said
    steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"step"' in x]
    assert steps[0]["threads"] == 2 and steps[-1]["threads"] == 1


def test_train_threads_fixes_the_count(image_folder, tmp_path, monkeypatch, two_threads, capsys):
    from gankit.train import run_training

    monkeypatch.setattr(threads, "FIRST_PROBE_S", 0.0)
    seen = _counting_iterations(monkeypatch, slow_above=0)
    run = run_training(tiny_layers(image_folder, epochs=1, threads=1), tmp_path / "run")
    assert set(seen) == {1} and torch.get_num_threads() == 2
    assert " on cpu, 1 thread (fp32)" in capsys.readouterr().err
    steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"step"' in x]
    assert steps and all("threads" not in s for s in steps)


def test_epoch_ends_run_on_the_current_count_while_a_probe_is_under_way(image_folder, tmp_path, monkeypatch,
                                                                        two_threads):
    """A probe's count is drawn per iteration; FID/KID and the writings at an epoch end take the count training
    found best, whichever count the epoch's last iteration drew."""
    from gankit.train import Trainer, run_training

    monkeypatch.setattr(threads, "FIRST_PROBE_S", 0.0)
    monkeypatch.setattr(threads, "PROBE_SAMPLES", 10**6)  # one probe from the first iteration to the end
    monkeypatch.setattr(threads, "CLEARLY_SLOWER", 1e9)  # keeping both counts in it
    seen, at_ends = _counting_iterations(monkeypatch), []
    real = Trainer._end_epoch

    def end_epoch(self, *args):
        at_ends.append(torch.get_num_threads())
        return real(self, *args)

    monkeypatch.setattr(Trainer, "_end_epoch", end_epoch)
    run_training(tiny_layers(image_folder, epochs=12), tmp_path / "run")
    assert set(seen) == {1, 2}  # the probe ran iterations on both counts ...
    assert at_ends == [2] * 12  # ... and every epoch end on the current one


def test_a_long_iteration_is_timed_phase_by_phase(image_folder, tmp_path, monkeypatch, two_threads):
    """Seed 004's critic bursts (100 critic batches for one G step) would make each timed unit tens of seconds
    long: the tuner times each of their phases instead, and short iterations whole."""
    from gankit.train import TUNED_PHASES_MAX, run_training

    kinds = []
    real = ThreadTuner.after_iteration

    def after(self, seconds, kind=None):
        kinds.append(kind)
        return real(self, seconds, kind)

    monkeypatch.setattr(ThreadTuner, "after_iteration", after)
    boost = TUNED_PHASES_MAX + 2
    run_training(tiny_layers(image_folder, epochs=100, max_steps=4, loss="wgan", strategy="critic", n_critic=2,
                             critic_boost=boost, critic_boost_first=2), tmp_path / "run")
    burst = [(1, 1, 0)] * boost + [(0, 0, 1)]  # each critic batch, then the G step
    assert kinds == burst + burst + [(2, 2, 1)] * 2
