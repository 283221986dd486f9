"""Study files: validation (every problem at once, with key paths and line numbers), grid expansion,
and the study files shipped in experiments/."""
from __future__ import annotations

from pathlib import Path

import pytest

from gaaf.experiments.study import Study, StudyError, grid_name, load_study, parse_study

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"

GOOD = """
title = "relu vs gaaf"
seeds = [0, 1]
baseline = "relu"

[base]
model = "resnet8_v1"
epochs = 2

[[runs]]
name = "relu"
activation = "relu"
published = 0.8084
published_source = "seed"

[grid]
activation = ["gaaf_relu"]
shift = [-1.0, 0.5]
variant = ["floor", "round"]
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(StudyError) as info:
        parse_study(text, "s.toml")
    return info.value.problems


def test_good_study_and_grid_expansion():
    s = parse_study(GOOD, "s.toml")
    assert s.title == "relu vs gaaf" and s.seeds == (0, 1) and s.baseline == "relu"
    assert [r.name for r in s.runs] == [
        "relu",
        "gaaf_relu-shift=-1-variant=floor", "gaaf_relu-shift=-1-variant=round",
        "gaaf_relu-shift=0.5-variant=floor", "gaaf_relu-shift=0.5-variant=round",
    ]  # fmt: skip
    assert s.run("relu").published == 0.8084 and s.run("relu").published_source == "seed"
    g = s.run("gaaf_relu-shift=0.5-variant=round")
    assert g.overrides == {"activation": "gaaf_relu", "shift": 0.5, "variant": "round"}
    assert s.options(g, 1, {"epochs": 1}) == {"model": "resnet8_v1", "epochs": 1, "activation": "gaaf_relu",
                                              "shift": 0.5, "variant": "round", "seed": 1}  # fmt: skip
    assert Study.from_dict(s.to_dict()) == s


def test_grid_names():
    assert grid_name({"activation": "gaaf_relu", "shift": -1.0}, {}) == "gaaf_relu-shift=-1"
    assert grid_name({"shift": 2.5}, {"activation": "gaaf_tanh"}) == "gaaf_tanh-shift=2.5"
    assert grid_name({"augment": ["crop", "flip"], "batch_norm": False}, {}) == "run-augment=crop+flip-batch_norm=false"


def test_all_problems_at_once_with_key_paths_and_lines():
    text = """title = "t"
seeds = [0, 0]
bogus = 1
baseline = "nope"

[base]
model = "resnet8_v1"
epochs = "ten"
seed = 3

[[runs]]
name = "relu"
activation = "relu"
published = 80.84

[[runs]]
name = "a"
activation = "gaaf_relu"

[[runs]]
name = "relu"
activation = "gaaf_relu"

[[runs]]
name = "g"
activation = "gaaf_relu"
shfit = -1.0
published_source = "blog"
"""
    problems = _problems(text)
    expected = [
        "line 2: seeds: has duplicates",
        "line 3: bogus: unknown key; allowed: title, description, seeds, baseline, base, runs, grid",
        "line 4: baseline: 'nope' names no run; choose one of: relu, a, g",
        "line 8: base.epochs: epochs must be an integer, got 'ten'",  # values are checked too
        "line 9: base.seed: not allowed in a study: use the top-level `seeds = [...]` list",
        "line 14: runs[0].published: must be an accuracy fraction in [0, 1]; got 80.84 (write 0.8084)",
        "line 21: runs[2].name: duplicate run name 'relu' (first at runs[0], line 12)",
        "line 27: runs[3].shfit: unknown key (did you mean 'shift'?); allowed: name, published,",
        "line 28: runs[3].published_source: must be one of: seed, paper; got 'blog'",
    ]
    assert len(problems) == len(expected), "\n".join(problems)
    for got, want in zip(problems, expected):
        assert got.startswith(want), f"{got!r} should start with {want!r}"


def test_bad_values_are_checked_by_train_config_each_reported():
    """Structure fine, values bad: TrainConfig's messages, blamed on the key that is wrong."""
    text = """seeds = [0]
[base]
model = "resnet8_v1"
epochs = "ten"

[[runs]]
name = "relu"
activation = "relux"

[[runs]]
name = "g"
activation = "gaaf_relu"
shift = "a"
lr = -1

[grid]
activation = ["gaaf_relu"]
width = [1.0]
"""
    problems = _problems(text)
    assert problems[0].startswith("line 4: base.epochs: epochs must be an integer, got 'ten'")
    assert problems[1].startswith("line 8: runs[0].activation: unknown activation 'relux'; choose one of:")
    assert problems[2].startswith("line 13: runs[1].shift: shift must be a number, got 'a'")
    assert problems[3].startswith("line 14: runs[1].lr: lr must be a finite number > 0")
    assert problems[4].startswith("line 18: grid.width:") and "width" in problems[4] and "gaaf_relu-width=1" in problems[4]
    assert len(problems) == 5, "\n".join(problems)


def test_structure_errors():
    assert _problems("seeds = []\n[[runs]]\nname='a'\n")[0].startswith("line 1: seeds: must be a non-empty list")
    assert "no runs" in _problems("[base]\nepochs = 1\n")[0]
    assert "missing `name" in _problems("[[runs]]\nactivation = 'relu'\n")[0]
    assert "not a usable run name" in _problems("[[runs]]\nname = 'a/b'\n")[0]
    assert "non-empty list" in _problems("[grid]\nshift = 1.0\n")[0]
    assert "duplicate values" in _problems("[grid]\nactivation = ['gaaf_relu']\nshift = [1.0, 1.0]\n")[0]
    assert "not allowed in a study" in _problems("[[runs]]\nname = 'a'\nout = 'x'\n")[0]
    dup = _problems("[[runs]]\nname = 'gaaf_relu-shift=1'\nactivation='gaaf_relu'\nshift=1.0\n"
                    "[grid]\nactivation = ['gaaf_relu']\nshift = [1.0]\n")  # fmt: skip
    assert "duplicate run name 'gaaf_relu-shift=1' (first at runs[0], line 2)" in dup[0]


def test_toml_syntax_error_and_missing_file(tmp_path):
    problems = _problems("title = \n")
    assert problems[0].startswith("not valid TOML:") and "line 1" in problems[0]
    with pytest.raises(Exception, match="not found"):
        load_study(tmp_path / "nope.toml")


def test_multiline_strings_do_not_confuse_line_numbers():
    text = 'description = """\nname = not a key\nshfit = 3\n"""\n[[runs]]\nname = "a"\nshfit = 1\n'
    problems = _problems(text)
    assert problems == [problems[0]] and problems[0].startswith("line 7: runs[0].shfit")


@pytest.mark.parametrize("name", ["seed_table", "paper_cifar", "paper_mnist", "quick", "demo", "cpu_replication"])
def test_shipped_studies_are_valid(name):
    s = load_study(EXPERIMENTS / f"{name}.toml")
    assert s.runs and s.title
    assert s.baseline in {r.name for r in s.runs}


def test_seed_table_is_the_seed_table():
    s = load_study(EXPERIMENTS / "seed_table.toml")
    seed_rows, ours = s.runs[:14], s.runs[14:]
    published = [r.published for r in seed_rows]
    assert published == [0.8084, 0.6517, 0.6924, 0.7042, 0.7441, 0.78, 0.7886, 0.7945, 0.7948, 0.78, 0.7768,
                         0.7733, 0.6603, 0.8054]  # fmt: skip
    assert all(r.published_source == "seed" for r in seed_rows)
    # one row beyond the seed's, with no published number: the surrogate limit at shift -1
    assert [(r.published, r.published_source) for r in ours] == [(None, None)]
    o = s.options(ours[0], 0)
    assert (o["activation"], o["variant"], o["shift"]) == ("gaaf_relu", "surrogate", -1)
    shifts = [s.options(r, 0).get("shift") for r in s.runs[1:12]]
    assert shifts == [5, 4, 3, 2, 1, 0, -0.5, -1, -2, -3, -4]
    assert s.options(s.runs[12], 0)["shape"] == "none"
    assert s.options(s.runs[13], 0)["variant"] == "round" and s.options(s.runs[13], 0)["shift"] == -1
    for r in s.runs:
        o = s.options(r, 0)
        assert (o["model"], o["dataset"], o["preset"], o["stem_activation"]) == ("resnet20_v1", "cifar10", "seed", "relu")
    assert s.baseline == s.runs[0].name and s.options(s.runs[0], 0)["activation"] == "relu"


def test_paper_cifar_rows_resolve_to_the_recipe_each_data_set_needs(tmp_path):
    """What `gaaf sweep` passes to `gaaf train --config` for each row (sweep.plan resolves the study through
    the one validator): SVHN without horizontal flips (a mirrored digit is another or no digit), CIFAR with
    the Keras example's shifts + flips; every row the seed's recipe (Adam 1e-3, its schedule, 200 epochs),
    so that a row changes one thing."""
    from gaaf.experiments.sweep import plan
    from gaaf.train.config import SEED_LR_SCHEDULE

    study = load_study(EXPERIMENTS / "paper_cifar.toml")
    runs = plan(study, tmp_path, seeds=[0])
    assert len(runs) == 12
    for run in runs:
        c = run.config
        assert c["augment"] == (["shift"] if c["dataset"] == "svhn" else ["shift", "flip"]), run.name
        assert (c["preset"], c["model"], c["optimizer"], c["lr"], c["epochs"], c["normalize"]) == (
            "seed", "resnet20_v1", "adam", 0.001, 200, "pixel_mean"), run.name
        assert (c["lr_schedule"], c["lr_schedule_unit"], c["warmup_iterations"], c["clip_grad_norm"]) == (
            SEED_LR_SCHEDULE, "epoch", 0, 0.0), run.name
        gaaf = c["activation"] == "gaaf_relu"
        assert gaaf == ("gaaf" in run.name.split("/")[0]) and (not gaaf or c["shift"] == -1.0), run.name
        assert c["batch_norm"] == ("bn" in run.name.split("/")[0]), run.name
    assert {r.config["dataset"] for r in runs} == {"cifar10", "cifar100", "svhn"}
    assert sum(not r.config["batch_norm"] for r in runs) == 6
