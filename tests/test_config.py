from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from musiclm.config import (
    from_dict,
    load_yaml,
    merge,
    parse_overrides,
    preset,
    presets,
    register_preset,
    save_yaml,
    to_dict,
)
from musiclm.errors import ConfigError
from musiclm.train.config import TrainConfig


@dataclass
class Inner:
    width: int = 4
    rates: list[float] = field(default_factory=lambda: [0.5, 1.0])


@dataclass
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    kind: Literal["a", "b"] = "a"
    scale: float | None = None
    pair: tuple[int, int] = (1, 2)
    table: dict[str, int] = field(default_factory=dict)
    flag: bool = False

    def validate(self) -> None:
        if self.inner.width > 100:
            raise ConfigError("inner.width must be <= 100")


def test_round_trip_yaml(tmp_path):
    cfg = Outer(name="x", inner=Inner(width=8, rates=[0.1]), kind="b", scale=2.0, table={"k": 3}, flag=True)
    save_yaml(cfg, tmp_path / "c.yaml")
    assert load_yaml(Outer, tmp_path / "c.yaml") == cfg
    assert to_dict(cfg)["pair"] == [1, 2]


def test_unknown_key_names_the_path():
    with pytest.raises(ConfigError, match=r"inner\.depth: unknown key"):
        from_dict(Outer, {"name": "x", "inner": {"depth": 3}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": 3}, r"name: expected a string"),
        ({"name": "x", "inner": {"width": "8"}}, r"inner\.width: expected an integer"),
        ({"name": "x", "inner": {"width": True}}, r"inner\.width: expected an integer"),
        ({"name": "x", "inner": {"rates": [1, "a"]}}, r"inner\.rates\[1\]: expected a number"),
        ({"name": "x", "kind": "c"}, r"kind: must be one of"),
        ({"name": "x", "flag": "yes"}, r"flag: expected true/false"),
        ({"name": "x", "pair": [1]}, r"pair: expected 2 items"),
        ({"name": "x", "table": {"k": 1.5}}, r"table\.k: expected an integer"),
        ({"name": "x", "scale": "big"}, r"scale: expected"),
        ({}, r"name: required key is missing"),
        ({"name": "x", "inner": {"width": 101}}, r"inner\.width must be <= 100"),
    ],
)
def test_type_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


def test_ints_are_accepted_as_floats_and_none_for_optional():
    cfg = from_dict(Outer, {"name": "x", "scale": 3, "inner": {"rates": [1]}})
    assert cfg.scale == 3.0 and isinstance(cfg.scale, float) and cfg.inner.rates == [1.0]
    assert from_dict(Outer, {"name": "x", "scale": None}).scale is None


def test_yaml_errors_name_the_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML"):
        load_yaml(Outer, tmp_path / "bad.yaml")
    (tmp_path / "typo.yaml").write_text("name: x\nknd: a\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: knd: unknown key"):
        load_yaml(Outer, tmp_path / "typo.yaml")
    with pytest.raises(ConfigError, match="no such config file"):
        load_yaml(Outer, tmp_path / "missing.yaml")


def test_merge_and_overrides():
    cfg = Outer(name="x")
    merged = merge(cfg, parse_overrides(["inner.width=16", "kind=b", "inner.rates=[0.1, 0.2]"]))
    assert merged.inner.width == 16 and merged.kind == "b" and merged.inner.rates == [0.1, 0.2]
    assert cfg.inner.width == 4  # the original is untouched
    with pytest.raises(ConfigError, match="nope: unknown key"):
        merge(cfg, {"inner.nope": 1})
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["width"])
    parsed = parse_overrides(["lr=8e-4", "name=abc", "n=3", "tag=inf"])
    assert parsed == {"lr": 8e-4, "name": "abc", "n": 3, "tag": "inf"}


def test_presets_registry():
    @register_preset("unit-test-model", "small")
    def _small() -> Outer:
        return Outer(name="small")

    assert preset("unit-test-model").name == "small"
    assert "train" in presets() and presets("train")["train"] == ["paper", "small"]
    with pytest.raises(ConfigError, match="no preset 'huge'"):
        preset("unit-test-model", "huge")
    with pytest.raises(ConfigError, match="no presets for model"):
        preset("no-such-model")


def test_train_config_presets_validate_and_round_trip(tmp_path):
    for name in ("small", "paper"):
        cfg = preset("train", name)
        save_yaml(cfg, tmp_path / f"{name}.yaml")
        assert load_yaml(TrainConfig, tmp_path / f"{name}.yaml") == cfg
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        from_dict(TrainConfig, {"batch_size": 0})
    with pytest.raises(ConfigError, match=r"optimizer.*lr must be positive"):
        from_dict(TrainConfig, {"optimizer": {"lr": -1.0}})


def test_shipped_config_files_load():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parent.parent / "configs" / "train").glob("*.yaml"))
    assert files, "configs/train/*.yaml should exist"
    for path in files:
        load_yaml(TrainConfig, path)
