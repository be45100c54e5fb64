"""Every configs/separation/*.gin parses through launch/separation_train.py's gin path and binds
an ExperimentConfig that builds valid separators; unbound required macros are named."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gin
import pytest

from mt3x.runs.gin_utils import CONFIG_ROOT, GinConfigError, parse_gin
from separation import data
from separation.models.unet import check_unet_bins

SEPARATION_GIN = sorted((CONFIG_ROOT / "separation").glob("*.gin"))
LAUNCH = Path(__file__).resolve().parents[2] / "launch"
REQUIRED = ["DATASET_ROOT = '/data/x'", "MODEL_DIR = '/runs/x'"]


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def test_the_promised_files_exist():
    names = {p.name for p in SEPARATION_GIN}
    assert {"dnn_demo.gin", "unet_demo.gin", "dnn_chorales.gin", "unet_chorales.gin",
            "dnn_synth.gin", "unet_synth.gin"} <= names


@pytest.mark.parametrize("path", SEPARATION_GIN, ids=lambda p: p.name)
def test_config_binds_a_valid_experiment(path):
    parse_gin([path], REQUIRED)
    gin.finalize()
    from separation import gin_registry
    config = gin_registry.ExperimentConfig()
    groups = data.parse_instruments(config.instruments)
    assert len(groups) >= 2
    assert set(config.models) <= {"dnn", "unet"} and config.models
    check_unet_bins(config.unet_n_fft // 2, len(config.unet_channels))
    assert gin.query_parameter("DATASET_ROOT/macro.value") == "/data/x"
    if path.name != "base.gin":
        kind = path.name.split("_")[0]
        assert config.models == (kind,)
    if "chorales" in path.name:     # targets that exist in the chorales set (no drums)
        assert {g.name for g in groups} == {"bass", "piano", "strings", "reed"}
        assert not any(g.drums for g in groups)
    if "synth" in path.name:        # the six groups of the out-of-domain report (issue 13)
        assert [g.name for g in groups] == ["piano", "guitar", "strings", "brass", "reed", "pipe"]
        if config.models == ("dnn",):   # low LR + validation selection: never below LS start
            assert config.dnn_keep_best and config.dnn_learning_rate <= 1e-5


def test_unbound_required_macro_is_named():
    spec = importlib.util.spec_from_file_location("launch_sep_train", LAUNCH / "separation_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--gin_file=separation/dnn_demo.gin", "--workdir=/tmp/x"]) == 2


def test_typo_names_the_parameter():
    with pytest.raises(GinConfigError, match="dnn_layer"):
        parse_gin([CONFIG_ROOT / "separation" / "dnn_demo.gin"],
                  REQUIRED + ["separation.ExperimentConfig.dnn_layer = 3"])


def test_print_config_shows_the_bindings(capsys):
    spec = importlib.util.spec_from_file_location("launch_sep_train2", LAUNCH / "separation_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--gin_file=separation/unet_chorales.gin", "--workdir=/tmp/x",
                        "--gin.DATASET_ROOT='/d'", "--gin.separation.ExperimentConfig.unet_steps=7",
                        "--print_config"]) == 0
    out = capsys.readouterr().out
    assert "unet_steps = 7" in out and "bass=32-39;piano=0-7;strings=40-55;reed=64-71" in out


def _launch_module(name):
    spec = importlib.util.spec_from_file_location(name, LAUNCH / "separation_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("value, expected", [
    ("piano,guitar", "'piano,guitar'"),                         # bare: taken as text
    ("piano=0-7;drums", "'piano=0-7;drums'"),
    ("'piano=0-7;drums'", "'piano=0-7;drums'"),                 # quoted as gin wants: as given
    ('"4stem"', "'4stem'"),
])
def test_instruments_bind_bare_or_quoted(value, expected, capsys):
    module = _launch_module(f"launch_sep_train_{abs(hash(value))}")
    assert module.main(["--gin_file=separation/dnn_demo.gin", "--workdir=/tmp/x",
                        "--gin.DATASET_ROOT=data/demo", f"--gin.INSTRUMENTS={value}",
                        "--gin.SEED=3", "--print_config"]) == 0
    out = capsys.readouterr().out
    assert f"INSTRUMENTS = {expected}" in out
    assert "DATASET_ROOT = 'data/demo'" in out and "SEED = 3" in out     # numbers stay numbers
    from separation import gin_registry
    config = gin_registry.ExperimentConfig()
    assert data.parse_instruments(config.instruments)


def test_an_unquoted_string_in_a_gin_binding_says_how_to_quote(capsys):
    module = _launch_module("launch_sep_train_quote")
    assert module.main(["--gin_file=separation/dnn_demo.gin", "--workdir=/tmp/x",
                        "--gin.DATASET_ROOT=data/demo",
                        "--gin_bindings", "INSTRUMENTS = piano", "--print_config"]) == 2
    err = capsys.readouterr().err
    assert "a string value needs quotes inside the binding" in err
    assert "--gin_bindings \"INSTRUMENTS = 'piano,guitar'\"" in err
