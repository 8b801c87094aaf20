"""The studies: the sampler finds a planted optimum, the same seed draws the same trials, and the
budget is exact however many workers share a study (real sqlite storage, real processes)."""

import math
import multiprocessing
import time

import pytest

from smec.model.methods.base import Knob, Method
from smec.params import Methods, Tune
from smec.training import tuning

TUNE = Tune(trials=40, startup=8, seed=0, lr=[1e-4, 1e-1], epochs=[2, 30])


class Planted(Method):
    name = "planted"
    knobs = (Knob("xbm_weight", 0.1, 10.0), Knob("xbm_k", 2, 32, integer=True))


def planted(trial) -> float:
    """Best at lr = 10^-2.5, xbm_weight = 10^0.5, 12 epochs, the identity start."""
    s = tuning.suggest(trial, Planted(), TUNE, Methods())
    return (
        -((math.log10(s.lr) + 2.5) ** 2)
        - (math.log10(s.methods.xbm_weight) - 0.5) ** 2
        - (s.epochs - 12) ** 2 / 100
        - 0.5 * (s.init == "random")
    )


def study_at(tmp_path, name="s", tune=TUNE, worker=0):
    url = tuning.storage_url(tmp_path / "study.db")
    return tuning.open_study(url, name, tune, worker), url


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


def test_a_trial_left_running_by_a_stopped_run_is_failed_and_replaced(tmp_path):
    study, url = study_at(tmp_path)
    study.ask()  # a run stopped in the middle of trial 0
    assert tuning.fail_orphans(study) == 1
    tuning.work(study, 3, url, planted)
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]


def test_the_trials_table_carries_each_trial_and_the_best_so_far(tmp_path):
    study, url = study_at(tmp_path)
    tuning.work(study, 6, url, planted)
    table = tuning.trials_table(study, Planted())
    assert list(table.columns[:5]) == ["method", "trial", "state", "value", "best_so_far"]
    assert list(table.best_so_far) == list(table.value.cummax())
    assert set(table.columns[5:]) == {"lr", "epochs", "init", "xbm_weight", "xbm_k"}
