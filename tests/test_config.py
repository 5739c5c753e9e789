"""Config: paper defaults, YAML + overrides, presets, and one clear error for each bad key or value."""

import math
from pathlib import Path

import pytest

from simclr.config import Config
from simclr.config_io import (
    build_config,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_override,
    read_yaml,
    save_config,
)
from simclr.errors import InputError


def test_defaults_are_the_papers() -> None:
    c = Config()
    assert (c.optim.name, c.optim.base_lr, c.optim.lr_scaling) == ("lars", 0.3, "linear")
    assert (c.optim.weight_decay, c.optim.warmup_epochs, c.optim.momentum) == (1e-6, 10.0, 0.9)
    assert c.optim.trust_coefficient == 0.001
    assert (c.train.batch_size, c.train.epochs, c.loss.temperature) == (4096, 100, 0.1)
    assert (c.model.arch, c.model.head.kind, c.model.head.out_dim) == ("resnet50", "nonlinear", 128)
    a = c.augment
    assert (a.crop_scale, a.color_strength, a.color_p, a.gray_p, a.blur_p) == \
        ((0.08, 1.0), 1.0, 0.8, 0.2, 0.5)
    assert math.isclose(a.crop_ratio[0], 3 / 4) and math.isclose(a.crop_ratio[1], 4 / 3)


def test_yaml_then_set_then_options(tmp_path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("optim: {base_lr: 0.5}\ntrain: {epochs: 7, batch_size: 64}\nmodel: {width: 0.5}\n")
    c = load_config(f, ["optim.base_lr=0.7", "loss.temperature=0.2", "augment.crop_scale=[0.2, 1.0]"],
                    {"train": {"epochs": 3}})
    assert (c.optim.base_lr, c.train.epochs, c.train.batch_size, c.model.width) == (0.7, 3, 64, 0.5)
    assert c.loss.temperature == 0.2 and c.augment.crop_scale == (0.2, 1.0)


def test_cifar_preset_and_explicit_keys_win() -> None:
    c = build_config({"augment": {"preset": "cifar10"}})
    assert (c.augment.color_strength, c.augment.blur_p) == (0.5, 0.0)
    c = build_config({"augment": {"preset": "cifar10", "color_strength": 1.0}})
    assert (c.augment.color_strength, c.augment.blur_p) == (1.0, 0.0)
    # a preset set over another (--set over a config file) brings back all of its own values
    c = load_config(Path(__file__).parents[1] / "configs" / "cifar10_cpu.yaml", ["augment.preset=imagenet"])
    assert (c.augment.color_strength, c.augment.blur_p) == (1.0, 0.5)


def test_round_trip_through_plain_dict() -> None:
    c = load_config(None, ["model.cifar_stem=true", "augment.preset=cifar10", "data.in_memory=false"])
    assert config_from_dict(config_to_dict(c)) == c
    assert c.data.in_memory == "false" and c.model.cifar_stem is True


@pytest.mark.parametrize("override,message", [
    ("optim.base_lrr=1", "unknown config key optim.base_lrr"),
    ("trainn.epochs=1", "unknown config key trainn"),
    ("train.batch_size=abc", "expected an integer"),
    ("train.epochs=abc", "expected a number"),
    ("train.epochs=.inf", "train.epochs: expected a finite number"),
    ("loss.temperature=.nan", "loss.temperature: expected a finite number"),
    ("train.time_budget=1e400", "train.time_budget: expected a finite number"),
    ("train.epochs=0", "train.epochs must be > 0 and <= 100000, got 0"),
    ("loss.temperature=-1", "loss.temperature must be > 0"),
    ("train.epochs=1e308", "train.epochs must be > 0 and <= 100000, got 1e\\+308"),
    ("optim.warmup_epochs=1e308", "optim.warmup_epochs must be >= 0 and <= 100000"),
    ("loss.temperature=1e308", "loss.temperature must be > 0 and <= 100, got 1e\\+308"),
    ("optim.base_lr=1e308", "optim.base_lr must be > 0 and <= 10000"),
    ("train.time_budget=1e308", "train.time_budget \\(minutes\\) must be >= 0 and <= 1e\\+06"),
    ("train.save_minutes=1e308", "train.save_minutes must be >= 0 and <= 1e\\+06"),
    ("augment.preset=[1, 2]", "unknown augment.preset \\[1, 2\\]"),
    ("optim.trust_coefficient=1e308", "optim.trust_coefficient must be > 0 and <= 1000"),
    ("train.knn_temperature=1e308", "train.knn_temperature must be > 0 and <= 100"),
    ("loss.margin=1e308", "loss.margin must be > 0 and <= 100"),
    ("loss.scale=1e308", "loss.scale must be > 0 and <= 10000"),
    ("optim.name=adam", "optim.name must be one of"),
    ("model.arch=vgg", "model.arch: unknown architecture"),
    ("augment.gray_p=1.5", "gray_p"),
    ("augment.crop_scale=0.5", "expected a list of 2 numbers"),
    ("augment.preset=svhn", "unknown augment.preset"),
    ("augment.size=64", "data.image_size"),
    ("model.head.kind=mlp", "head kind"),
    ("train.channels_last=maybe", "expected true or false"),
    ("data.holdout=1.0", "data.holdout"),
    ("epochs", "KEY=VALUE"),
])
def test_bad_values_are_one_line_input_errors(override: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        load_config(None, [override])
    assert "\n" not in str(info.value)


def test_bad_yaml_files(tmp_path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: [1, 2\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="mapping"):
        load_config(listy)
    section = tmp_path / "section.yaml"
    section.write_text("train: 3\n")
    with pytest.raises(InputError, match="must be a section"):
        load_config(section)
    # a section set to a value is caught even when a later layer sets keys of that section (as the CLI's
    # options do)
    with pytest.raises(InputError, match="config key train must be a section"):
        load_config(None, ["train=1"], {"train": {"epochs": 2}})
    with pytest.raises(InputError, match="expected a number"):
        load_config(None, ["optim.base_lr=x"], {"optim": {"base_lr": 0.5}})


def test_a_key_given_twice_is_refused_not_silently_the_last(tmp_path) -> None:
    twice = tmp_path / "twice.yaml"
    twice.write_text("optim:\n  base_lr: 0.5\n  weight_decay: 1.0e-6\n  base_lr: 5.0\n")
    with pytest.raises(InputError, match=r"not valid YAML: duplicate key 'base_lr' \(line 4\)"):
        load_config(twice)
    sections = tmp_path / "sections.yaml"
    sections.write_text("train: {epochs: 2}\noptim: {base_lr: 0.5}\ntrain: {batch_size: 8}\n")
    with pytest.raises(InputError, match="duplicate key 'train' \\(line 3\\)"):
        load_config(sections)
    merged = tmp_path / "merged.yaml"  # a YAML merge key: its keys may be overridden, as YAML says
    merged.write_text("base: &b {name: sgd, base_lr: 0.5}\noptim:\n  <<: *b\n  base_lr: 0.7\n")
    raw = read_yaml(merged)
    assert raw["optim"] == {"name": "sgd", "base_lr": 0.7}
    same_name = tmp_path / "ok.yaml"  # the same key in two sections is no duplicate
    same_name.write_text("optim: {name: sgd}\nloss: {name: nt_logistic}\n")
    config = load_config(same_name)
    assert (config.optim.name, config.loss.name) == ("sgd", "nt_logistic")


def test_parse_override_reads_yaml_values() -> None:
    assert parse_override("a.b=0.5") == {"a": {"b": 0.5}}
    assert parse_override("a=[1, 2]") == {"a": [1, 2]}
    assert parse_override("a=auto") == {"a": "auto"}


def test_numbers_in_exponent_form_without_a_dot(tmp_path) -> None:
    # YAML 1.1 reads 1e-6 (no dot) as a string; a float key takes it as the number it spells
    (tmp_path / "c.yaml").write_text("optim:\n  weight_decay: 1e-6\n  base_lr: 3E-1\n")
    config = load_config(str(tmp_path / "c.yaml"), ["loss.temperature=5e-2", "optim.final_lr=+1e-3"], {})
    assert (config.optim.weight_decay, config.optim.base_lr) == (1e-6, 0.3)
    assert (config.loss.temperature, config.optim.final_lr) == (0.05, 1e-3)
    for bad in ("optim.base_lr=1e-x", "optim.base_lr=e-3", "optim.base_lr=fast"):
        with pytest.raises(InputError, match="expected a number"):
            load_config(None, [bad], {})


def test_yaml_words_on_off_yes_no_stay_words_for_choices_and_mean_booleans_for_flags(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  compile: off\n  channels_last: no\n  sync_bn: yes\n"
                    "data:\n  in_memory: false\n")
    config = load_config(path)
    assert config.train.compile == "off" and config.train.channels_last is False \
        and config.train.sync_bn is True
    assert config.data.in_memory == "false"
    assert [load_config(None, [f"data.in_memory={w}"]).data.in_memory for w in ("yes", "off", "true")] == [
        "true", "false", "true"]
    config = load_config(None, ["train.compile=off", "train.channels_last=on", "train.gather_negatives=off"])
    assert (config.train.compile, config.train.channels_last, config.train.gather_negatives) == \
        ("off", True, False)
    saved = tmp_path / "saved.yaml"
    save_config(load_config(path), saved)
    assert load_config(saved).train.compile == "off"  # written so that it reads back the same


def test_lists_given_with_commas() -> None:
    assert load_config(None, ["augment.ops=crop,sobel"]).augment.ops == ("crop", "sobel")
    assert load_config(None, ["augment.crop_scale=0.2,1.0"]).augment.crop_scale == (0.2, 1.0)
    with pytest.raises(InputError, match="expected a list of 2 numbers"):
        load_config(None, ["augment.crop_scale=0.2,0.5,1.0"])
    assert load_config(None, ["augment.ops=[crop, color]"]).augment.ops == ("crop", "color")
    with pytest.raises(InputError, match="unknown operation"):
        load_config(None, ["augment.ops=crop,colour"])
