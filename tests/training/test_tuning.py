"""The studies: the sampler finds a planted optimum, the same seed draws the same trials, and the
budget is exact however many workers share a study (real sqlite storage, real processes)."""

import math
import multiprocessing
import time

import pytest

from smec.errors import SmecError
from smec.model.methods.base import Knob, Method
from smec.params import Methods, Params, Tune
from smec.training import tuning

TUNE = Tune(trials=40, startup=8, seed=0, lr=[1e-4, 1e-1], epochs=[2, 30])
N_ITEMS = 1000
FIRST = {"lr": 1e-3, "epochs": 20, "init": "random", "xbm_weight": 1.0, "xbm_k": 10}


class Planted(Method):
    name = "planted"
    knobs = (Knob("xbm_weight", 0.1, 10.0), Knob("xbm_k", 2, 32, integer=True))


def planted(trial) -> float:
    """Best at lr = 10^-2.5, xbm_weight = 10^0.5, 12 epochs, the identity start."""
    s = tuning.suggest(trial, Planted(), TUNE, Methods(), N_ITEMS)
    return (
        -((math.log10(s.lr) + 2.5) ** 2)
        - (math.log10(s.methods.xbm_weight) - 0.5) ** 2
        - (s.epochs - 12) ** 2 / 100
        - 0.5 * (s.init == "random")
    )


def study_at(tmp_path, name="s", tune=TUNE, worker=0):
    url = tuning.storage_url(tmp_path / "study.db")
    return tuning.open_study(url, name, tuning.sampler_seed(tune, 0, worker), tune, FIRST), url


def test_the_study_finds_a_planted_optimum_that_random_draws_miss(tmp_path):
    study, url = study_at(tmp_path)
    assert tuning.work(study, TUNE.trials, url, planted) == TUNE.trials
    values = [t.value for t in study.trials]
    startup = max(values[: TUNE.startup])  # TPE's random trials
    assert study.best_value > startup + 0.1
    assert study.best_value > -0.15
    settings, summary = tuning.best_settings(study, Planted(), Methods())
    assert abs(math.log10(settings.lr) + 2.5) < 0.3 and settings.init == "identity"
    assert summary["trials"] == TUNE.trials and summary["value"] == study.best_value


def test_the_same_seed_draws_the_same_trials(tmp_path):
    runs = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        study, url = study_at(tmp_path / folder)
        tuning.work(study, 12, url, planted)
        runs.append([t.params for t in study.trials])
    assert runs[0] == runs[1]


def test_settings_read_back_from_their_values_are_the_same():
    s = tuning.Settings(3e-3, 7, "random", Methods(xbm_weight=2.5, xbm_k=4))
    assert tuning.Settings.of(s.as_dict(Planted()), Methods()) == s
    assert s.as_dict(Planted()) == {
        "lr": 3e-3,
        "epochs": 7,
        "init": "random",
        "xbm_weight": 2.5,
        "xbm_k": 4,
    }


def slow_planted(trial) -> float:
    time.sleep(0.05)  # long enough for the two workers to interleave
    return planted(trial)


def worker(folder, index: int, budget: int, ran) -> None:
    study, url = study_at(folder, worker=index)
    ran[index] = tuning.work(study, budget, url, slow_planted)


def test_two_worker_processes_share_one_budget_exactly(tmp_path):
    budget = 16
    ctx = multiprocessing.get_context("spawn")
    ran = ctx.Array("i", 2)
    procs = [ctx.Process(target=worker, args=(tmp_path, i, budget, ran)) for i in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    study, _ = study_at(tmp_path)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE"] * budget  # none lost, none beyond the budget
    assert sorted(t.number for t in study.trials) == list(range(budget))
    assert list(ran) != [budget, 0] and list(ran) != [0, budget] and sum(ran) == budget


def test_a_failed_trial_does_not_use_up_the_budget(tmp_path):
    study, url = study_at(tmp_path)
    calls = []

    def flaky(trial):
        calls.append(trial.number)
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return planted(trial)

    with pytest.raises(RuntimeError):
        tuning.work(study, 5, url, flaky)
    assert tuning.work(study, 5, url, flaky) == 4
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 5 and states.count("FAIL") == 1


def stopped_worker(folder) -> None:
    """A worker that asks for a trial, then ends without telling its value (killed)."""
    study, url = study_at(folder, worker=1)
    tuning.next_trial(study, 5, url)


def joining_worker(folder, failed) -> None:
    """A second worker opening the study, as `tune@<method>` does: it fails the orphans."""
    study, url = study_at(folder, worker=1)
    failed.value = tuning.fail_orphans(study, url)


def in_process(target, *args) -> None:
    proc = multiprocessing.get_context("spawn").Process(target=target, args=args)
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0


def test_a_trial_left_running_by_a_stopped_worker_is_failed_and_replaced(tmp_path):
    in_process(stopped_worker, tmp_path)  # a run stopped in the middle of trial 0
    study, url = study_at(tmp_path)
    assert [t.state.name for t in study.trials] == ["RUNNING"]
    assert tuning.fail_orphans(study, url) == 1
    tuning.work(study, 3, url, planted)
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]


def test_a_worker_joining_a_sqlite_study_leaves_the_running_workers_trial_alone(tmp_path):
    study, url = study_at(tmp_path)
    trial = tuning.next_trial(study, 5, url)  # this process is a live worker in its trial
    failed = multiprocessing.get_context("spawn").Value("i", -1)
    in_process(joining_worker, tmp_path, failed)
    assert failed.value == 0
    study.tell(trial, planted(trial))  # its value is still told
    assert [t.state.name for t in study.trials] == ["COMPLETE"]


def test_the_trials_table_carries_each_trial_and_the_best_so_far(tmp_path):
    study, url = study_at(tmp_path)
    tuning.work(study, 6, url, planted)
    table = tuning.trials_table(study, Planted())
    head = ["method", "trial", "state", "value", "value_sd", "best_so_far"]
    assert list(table.columns[:6]) == head
    assert list(table.best_so_far) == list(table.value.cummax())
    assert set(table.columns[6:]) == {"lr", "epochs", "init", "xbm_weight", "xbm_k"}


def test_every_study_starts_at_the_default_settings_once_however_many_open_it(tmp_path):
    study, url = study_at(tmp_path)
    again, _ = study_at(tmp_path, worker=1)  # a second worker joins: nothing queued twice
    tuning.work(again, 3, url, planted)
    assert study.trials[0].params == FIRST
    assert [t.params == FIRST for t in study.trials] == [True, False, False]
    _, summary = tuning.best_settings(study, Planted(), Methods())
    assert summary["default_value"] == study.trials[0].value


class Sized(Method):
    name = "sized"
    knobs = (Knob("xbm_capacity", 256, 8192, integer=True, per_item=True),)


def test_a_per_item_knob_is_searched_only_up_to_the_items_there_are(tmp_path):
    url = tuning.storage_url(tmp_path / "study.db")
    first = tuning.default_values(Params(), Sized(), 600)
    assert first["xbm_capacity"] == 600  # the default 4,096 trains as the whole memory
    study = tuning.open_study(url, "s", 0, TUNE, first)

    def capacity(trial):
        return tuning.suggest(trial, Sized(), TUNE, Methods(), 600).methods.xbm_capacity

    tuning.work(study, 20, url, capacity)
    assert min(study.trials, key=lambda t: t.value).value >= 256
    assert max(t.value for t in study.trials) <= 600


def test_a_default_outside_its_search_range_is_a_one_line_error():
    p = Params(methods=Methods(xbm_weight=50.0))
    with pytest.raises(SmecError, match=r"methods.xbm_weight=50.0: outside planted's search range"):
        tuning.default_values(p, Planted(), N_ITEMS)
    with pytest.raises(SmecError, match=r"tune.lr=\[0.01, 0.1\]: must contain the default train"):
        tuning.default_values(Params(tune={"lr": [0.01, 0.1]}), Planted(), N_ITEMS)
