"""Every gin file under configs/ parses (with its %gin.REQUIRED macros bound), the model files
build the intended networks, the experiments bind what they promise, and a typo or an unbound
required macro gives an error naming the file, line or macro."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import gin
import pytest

from mt3x.runs.gin_utils import CONFIG_ROOT, GinConfigError, parse_gin

ALL_GIN_FILES = sorted(CONFIG_ROOT.rglob("*.gin"))
REQUIRED_ERROR = re.compile(r"(\w+)/macro\.value set to `%gin\.REQUIRED`")
LAUNCH = Path(__file__).resolve().parents[2] / "launch"


def _load_launch_common():
    spec = importlib.util.spec_from_file_location("launch_common", LAUNCH / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def parse_with_required_bound(files, bindings=()) -> tuple[str, list[str]]:
    """Parses and finalizes; binds each unbound %gin.REQUIRED macro to a placeholder string and
    retries. Returns (config text, names of the required macros found)."""
    bindings = list(bindings)
    required: list[str] = []
    for _ in range(20):
        gin.clear_config()
        text = parse_gin(files, bindings)
        try:
            gin.finalize()
            return text, required
        except ValueError as err:
            match = REQUIRED_ERROR.search(str(err))
            if not match:
                raise
            required.append(match.group(1))
            bindings.append(f"{match.group(1)} = 'required-placeholder'")
    raise AssertionError(f"too many required macros in {files}")


def test_configs_folder_holds_the_promised_files():
    names = {str(p.relative_to(CONFIG_ROOT)) for p in ALL_GIN_FILES}
    assert {"models/mt3.gin", "models/ismir2021.gin", "models/base.gin", "models/small_cpu.gin",
            "models/tiny.gin", "runs/train.gin", "runs/finetune.gin", "runs/eval.gin",
            "runs/infer.gin", "experiments/demo_cpu.gin", "experiments/mt3_slakh.gin",
            "experiments/finetune_demo.gin"} <= names


@pytest.mark.parametrize("path", ALL_GIN_FILES, ids=lambda p: str(p.relative_to(CONFIG_ROOT)))
def test_every_gin_file_parses(path):
    parse_with_required_bound([path])


@pytest.mark.parametrize("run, required", [
    ("runs/train.gin", {"DATASET_ROOT", "MODEL_DIR", "TRAIN_STEPS"}),
    ("runs/finetune.gin", {"DATASET_ROOT", "MODEL_DIR", "TRAIN_STEPS", "INIT_CHECKPOINT"}),
    ("runs/eval.gin", {"CHECKPOINT", "DATASET_ROOT"}),
    ("runs/infer.gin", {"CHECKPOINT", "AUDIO_FILES", "INFER_OUTPUT_DIR"}),
    ("experiments/demo_cpu.gin", {"DATASET_ROOT", "MODEL_DIR"}),
    ("experiments/mt3_slakh.gin", {"DATASET_ROOT", "MODEL_DIR"}),
    ("experiments/mt3_gpu.gin", {"DATASET_ROOT", "MODEL_DIR", "CACHE_DIR"}),
    ("experiments/finetune_demo.gin", {"DATASET_ROOT", "MODEL_DIR", "INIT_CHECKPOINT"}),
])
def test_run_files_require_exactly_their_macros(run, required):
    _, found = parse_with_required_bound([run, "models/small_cpu.gin"]
                                         if run.startswith("runs/") else [run])
    assert set(found) == required


@pytest.mark.parametrize("name, expected", [
    ("mt3", dict(vocab_size=1536, emb_dim=512, num_encoder_layers=8, dropout_rate=0.1)),
    ("ismir2021", dict(vocab_size=1664, emb_dim=512)),
    ("base", dict(emb_dim=768, num_encoder_layers=12, num_heads=12)),
    ("small_cpu", dict(emb_dim=256, num_encoder_layers=2)),
    ("tiny", dict(emb_dim=32, num_encoder_layers=1, dropout_rate=0.0)),
])
def test_model_files_build_the_named_network(name, expected):
    from mt3x.runs import gin_registry

    parse_with_required_bound([f"models/{name}.gin"])
    model = gin_registry.Mt3Model()
    for field, value in expected.items():
        assert getattr(model.config, field) == value, field
    assert model.inputs == "frames" and model.z_loss == pytest.approx(1e-4)
    assert gin.query_parameter("VOCAB/macro.value") == ("ismir2021" if name == "ismir2021"
                                                        else "mt3")
    mt3_loss = "sum" if name in ("mt3", "ismir2021", "base") else "mean"
    assert model.loss_normalization == mt3_loss


def test_mt3_slakh_is_mt3s_recipe():
    parse_with_required_bound(["experiments/mt3_slakh.gin"])
    macro = lambda name: gin.query_parameter(f"{name}/macro.value")  # noqa: E731
    assert (macro("MODEL_CONFIG"), macro("BATCH_SIZE"), macro("OPTIMIZER"),
            macro("LEARNING_RATE"), macro("TARGET_LENGTH"), macro("TRAIN_STEPS")) == (
        "mt3", 256, "adafactor", 1e-3, 1024, 1_000_000)
    assert macro("BEST_METRIC") == "eval/multi_instrument_f1"


def test_mt3_gpu_is_bf16_on_grain():
    from mt3x.runs import gin_registry

    parse_with_required_bound(["experiments/mt3_gpu.gin"],
                              ["DATASET_ROOT = '/data'", "MODEL_DIR = '/runs/x'",
                               "CACHE_DIR = '/data_cache'"])
    config = gin_registry.Mt3TrainConfig()
    assert config.data.input_pipeline == "grain" and config.data.cache_dir == "/data_cache"
    assert config.model.config.dtype == "bfloat16" and config.model.config.emb_dim == 512
    assert config.model.config.attention_impl == "auto"
    assert (config.data.batch_size, config.schedule.optimizer, config.schedule.warmup_steps) == (
        128, "adafactor", 1000)
    assert config.num_partitions == 1  # data parallel over all local devices


def test_finetune_demo_freezes_the_encoder_and_keeps_the_demo_settings():
    parse_with_required_bound(["experiments/finetune_demo.gin"])
    macro = lambda name: gin.query_parameter(f"{name}/macro.value")  # noqa: E731
    assert macro("FREEZE_PATTERNS") == ["^encoder/"]
    assert (macro("MODEL_CONFIG"), macro("BATCH_SIZE"), macro("TARGET_LENGTH"),
            macro("OPTIMIZER")) == ("small_cpu", 8, 192, "adamw")


def test_a_typo_names_the_file_and_line(tmp_path):
    bad = tmp_path / "typo.gin"
    bad.write_text("include 'experiments/demo_cpu.gin'\n\nmt3x.runs.DataConfig.batch_szie = 4\n")
    with pytest.raises(GinConfigError) as err:
        parse_gin([bad])
    message = str(err.value)
    assert "batch_szie" in message and str(bad) in message and "line 3" in message


def test_an_unknown_configurable_names_the_file(tmp_path):
    bad = tmp_path / "unknown.gin"
    bad.write_text("import mt3x.runs.gin_registry\nmt3x.train_mt4.batch_size = 4\n")
    with pytest.raises(GinConfigError, match=r"train_mt4(.|\n)*unknown\.gin"):
        parse_gin([bad])


def test_launch_flags_become_bindings_and_unbound_required_macros_are_named():
    common = _load_launch_common()
    parser = common.build_parser("test")
    args, bindings = common.parse_flags(parser, [
        "--gin_file", "experiments/demo_cpu.gin", "--gin.TRAIN_STEPS=7",
        "--gin.mt3x.runs.Mt3TrainConfig.seed", "3", "--gin_bindings", "BATCH_SIZE = 16",
        "--workdir", "/tmp/x"])
    assert args.gin_file == ["experiments/demo_cpu.gin"] and args.workdir == "/tmp/x"
    assert bindings == ["BATCH_SIZE = 16", "TRAIN_STEPS = 7",
                        "mt3x.runs.Mt3TrainConfig.seed = 3"]
    with pytest.raises(GinConfigError, match="DATASET_ROOT|MODEL_DIR"):
        common.parse_gin_config(args.gin_file, bindings)
    gin.clear_config()
    text = common.parse_gin_config(args.gin_file, bindings + [
        "DATASET_ROOT = '/data'", f"MODEL_DIR = {common.quote('/tmp/x')}"])
    assert "TRAIN_STEPS = 7" in text
    assert gin.query_parameter("mt3x.runs.Mt3TrainConfig.seed") == 3
    assert sys.modules.get("mt3x.runs.gin_registry") is not None


def test_demo_cpu_gin_is_the_demos_training_config(tmp_path):
    """configs/experiments/demo_cpu.gin is the demo's one home: `mt3x-demo` builds its
    Mt3TrainConfig from it with the same bindings a user would pass to launch/train.py."""
    from mt3x.cli.demo import demo_train_bindings
    from mt3x.models import get_config
    from mt3x.runs.config import Mt3TrainConfig
    from mt3x.runs.gin_registry import load_train_config

    config, text = load_train_config(["experiments/demo_cpu.gin"],
                                     demo_train_bindings(tmp_path / "data", tmp_path / "run",
                                                         seed=3, steps=None))
    assert isinstance(config, Mt3TrainConfig) and "TRAIN_STEPS = 500" in text
    assert (str(config.workdir), str(config.data.dataset_root), config.seed) == (
        str(tmp_path / "run"), str(tmp_path / "data"), 3)
    assert config.model.config == get_config("small_cpu", emb_dim=128, num_heads=4, head_dim=32,
                                             mlp_dim=256, dropout_rate=0.0)
    assert (config.model.loss_normalization, config.model.max_decode_length) == ("mean", 192)
    assert (config.data.batch_size, config.data.target_length, config.data.in_memory_cache) == (
        8, 192, True)
    schedule = config.schedule
    assert (schedule.num_steps, schedule.optimizer, schedule.learning_rate,
            schedule.lr_schedule, schedule.warmup_steps, schedule.weight_decay) == (
        500, "adamw", 3e-3, "constant", 50, 0.0)
    assert (config.evaluation.every_steps, config.evaluation.loss_batches,
            config.evaluation.transcription) == (250, 2, True)
    assert (config.checkpoint.save_every_steps, config.checkpoint.keep_best,
            config.checkpoint.best_metric, config.checkpoint.best_mode) == (
        250, 1, "eval/multi_instrument_f1", "max")
    assert config.report.log_every_steps == 25
    short, _ = load_train_config(["experiments/demo_cpu.gin"],
                                 demo_train_bindings(tmp_path, tmp_path, seed=0, steps=40))
    assert (short.schedule.num_steps, short.evaluation.every_steps,
            short.checkpoint.save_every_steps) == (40, 20, 20)
