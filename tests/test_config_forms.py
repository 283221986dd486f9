"""Config values in every form they come in: list options as a list or as the flag's one string (a flag,
a config file and a study file give the same TrainConfig), and the activation fields resolved to the
values the layer uses — also for configs written before they were recorded (None = the default)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gaaf.activations import describe_activation
from gaaf.cli import build_parser
from gaaf.errors import UserError
from gaaf.experiments.study import StudyError, parse_study
from gaaf.experiments.sweep import config_differences, plan
from gaaf.train.checkpoint import config_differences as resume_differences
from gaaf.train.cli import config_from_args
from gaaf.train.config import check_config, load_config_file, resolve_config, resolve_activation_fields

ACT_FIELDS = ("shape", "shift", "slope", "center", "width", "frequency", "variant")

# (field, the flag's text, the same as a list, the value it means)
LIST_OPTIONS = [
    ("hidden", "512,512", [512, 512], [512, 512]),
    ("augment", "crop,flip", ["crop", "flip"], ["crop", "flip"]),
    ("adam_betas", "0.8,0.99", [0.8, 0.99], [0.8, 0.99]),
    ("lr_schedule", "81:0.1,121:0.01", [[81, 0.1], [121, 0.01]], [[81.0, 0.1], [121.0, 0.01]]),
]


def _flag_config(argv: list[str]):
    return config_from_args(build_parser().parse_args(["train", "--model", "mlp", *argv]))


# ---------------------------------------------------------------------- list options
@pytest.mark.parametrize("name, text, as_list, value", LIST_OPTIONS)
def test_a_flag_a_file_string_and_a_file_list_give_the_same_config(tmp_path: Path, name, text, as_list, value):
    flag = _flag_config([f"--{name.replace('_', '-')}", text])
    toml_string = tmp_path / "s.toml"
    toml_string.write_text(f'model = "mlp"\n{name} = "{text}"\n')
    json_list = tmp_path / "l.json"
    json_list.write_text(json.dumps({"model": "mlp", name: as_list}))
    from_string, from_list = (resolve_config(load_config_file(p)) for p in (toml_string, json_list))
    assert getattr(flag, name) == getattr(from_string, name) == getattr(from_list, name) == value
    assert flag == from_string == from_list


@pytest.mark.parametrize("name, text, as_list, value", LIST_OPTIONS)
def test_a_study_takes_both_forms_of_each_list_option(name, text, as_list, value):
    runs = "".join(f'\n[[runs]]\nname = "{n}"\n{name} = {v}\n' for n, v in (("s", f'"{text}"'), ("l", json.dumps(as_list))))
    study = parse_study('[base]\nmodel = "mlp"\n' + runs)
    a, b = (resolve_config({**study.base, **r.overrides}) for r in study.runs)
    assert getattr(a, name) == getattr(b, name) == value


@pytest.mark.parametrize("name, value, forms", [
    ("hidden", "512,x", 'hidden must be a list of integers like [512, 512] or "512,512", got \'512,x\''),
    ("hidden", [1.5], 'hidden must be a list of integers like [512, 512] or "512,512", got [1.5]'),
    ("augment", 3, 'augment must be a list of names like ["crop", "flip"] or "crop,flip", got 3'),
    ("adam_betas", "a,b", 'adam_betas must be a list of two numbers like [0.9, 0.999] or "0.9,0.999"'),
    ("lr_schedule", "81", 'lr_schedule must be a list of [epoch, factor] pairs like [[81, 0.1], [121, 0.01]] '
                          'or "81:0.1,121:0.01", got \'81\''),
    ("lr_schedule", [81, 0.1], "lr_schedule must be a list of [epoch, factor] pairs like"),
])
def test_a_bad_list_is_one_problem_naming_both_forms(name, value, forms):
    cfg, problems = check_config({"model": "mlp", name: value})
    assert cfg is None and len(problems) == 1 and forms in problems[0]


def test_a_bad_list_flag_and_study_value_say_the_same(tmp_path: Path, capsys):
    from gaaf.cli import main

    assert main(["train", "--model", "mlp", "--hidden", "512,x", "--out", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'hidden must be a list of integers like [512, 512] or "512,512"' in err
    with pytest.raises(StudyError, match=r'line 3: base\.hidden: hidden must be a list of integers like \[512, 512\]'):
        parse_study('[base]\nmodel = "mlp"\nhidden = "512,x"\n[[runs]]\nname = "a"\n')
    assert not (tmp_path / "never").exists()


def test_empty_strings_and_none_are_the_empty_list():
    """"" and "none" mean []: no augmentation (as --no-augment), a constant learning rate; the sizes and
    betas cannot be empty, which their range checks say."""
    for text in ("", "none", " None "):
        cfg = resolve_config({"augment": text, "lr_schedule": text})
        assert cfg.augment == [] and cfg.lr_schedule == []
    assert _flag_config(["--augment", ""]).augment == _flag_config(["--no-augment"]).augment == []
    with pytest.raises(UserError, match=r"hidden must be a non-empty list of sizes >= 1, got \[\]"):
        resolve_config({"model": "mlp", "hidden": ""})
    with pytest.raises(UserError, match=r"adam_betas must be two numbers in \[0, 1\), got \[\]"):
        resolve_config({"adam_betas": "none"})


# ---------------------------------------------------------------------- the activation, resolved
def _act(cfg) -> dict:
    return {k: getattr(cfg, k) for k in ACT_FIELDS}


def test_gaaf_relu_records_the_values_it_uses_and_plain_activations_none():
    assert _act(resolve_config({"activation": "gaaf_relu"})) == dict(
        shape="sigmoid", shift=4.0, slope=1.0, center=None, width=None, frequency=10000.0, variant="floor")
    assert _act(resolve_config({"activation": "gaaf_tanh", "variant": "round"})) == dict(
        shape="gaussian", shift=None, slope=None, center=0.0, width=3.0, frequency=10000.0, variant="round")
    assert _act(resolve_config({"activation": "gaaf_relu", "shape": "none"})) == dict(
        shape="none", shift=None, slope=None, center=None, width=None, frequency=10000.0, variant="floor")
    assert set(_act(resolve_config({"activation": "relu"})).values()) == {None}
    assert resolve_config({"activation": "gaaf_relu"}).stem_activation is None  # None: the activation itself


@pytest.mark.parametrize("given", [
    {"activation": "gaaf_relu"}, {"activation": "gaaf_relu", "shift": -1.0, "variant": "round"},
    {"activation": "gaaf_relu", "shape": "none"}, {"activation": "gaaf_sigmoid"}, {"activation": "relu"},
])
def test_resolving_twice_changes_nothing_and_the_report_cells_stay(given):
    cfg = resolve_config(given)
    assert resolve_config(cfg.to_dict()) == cfg
    assert resolve_activation_fields(cfg.to_dict()) == _act(cfg)
    assert describe_activation(cfg.to_dict()) == describe_activation(given)


def test_a_config_file_with_another_activation_drops_only_the_old_defaults():
    """A resolved config.json plus --activation/--shape: the new activation's own defaults, while
    values the file set itself still apply (and are checked)."""
    old = resolve_config({"activation": "gaaf_relu"}).to_dict()
    assert _act(resolve_config(old, {"activation": "gaaf_tanh"})) == _act(resolve_config({"activation": "gaaf_tanh"}))
    assert _act(resolve_config(old, {"activation": "relu"})) == _act(resolve_config({"activation": "relu"}))
    assert _act(resolve_config(old, {"shape": "gaussian"})) == _act(
        resolve_config({"activation": "gaaf_relu", "shape": "gaussian"}))
    moved = resolve_config({"activation": "gaaf_relu", "shift": -1.0}).to_dict()
    with pytest.raises(UserError, match="got unexpected shift"):
        resolve_config(moved, {"shape": "gaussian"})
    assert resolve_config(moved, {"activation": "gaaf_elu"}).shift == -1.0


def test_old_null_configs_are_the_same_settings_on_resume_and_in_a_sweep(tmp_path: Path):
    new = resolve_config({"activation": "gaaf_relu", "shift": -1.0})
    old = {**new.to_dict(), **{k: None for k in ACT_FIELDS}, "shift": -1.0}
    assert resume_differences(old, new) == []
    assert resume_differences({**old, "shift": None}, new) == ["shift: 4.0 -> -1.0"]  # a real difference still shows
    study = parse_study('[base]\nmodel = "mlp"\n[[runs]]\nname = "g"\nactivation = "gaaf_relu"\nshift = -1.0\n')
    (run,) = plan(study, tmp_path)
    assert run.config["shape"] == "sigmoid" and run.config["slope"] == 1.0
    run.folder.mkdir(parents=True)
    (run.folder / "config.json").write_text(json.dumps({"config": {**run.config, **{k: None for k in ACT_FIELDS},
                                                                   "shift": -1.0}}))
    assert config_differences(run.folder, run.config) == ""
    plan(study, tmp_path)  # not a conflict
    (run.folder / "config.json").write_text(json.dumps({"config": {**run.config, **{k: None for k in ACT_FIELDS}}}))
    assert config_differences(run.folder, run.config) == "shift 4.0 → -1.0"
