"""t5x interop as the README promises: relative paths, the head count under --config auto and
explicit sizes, the `checkpoint_<step>` export t5x restores (README recipe), bfloat16 export."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorstore as ts
from flax import serialization, traverse_util

from mt3x.cli import export_t5x, import_t5x
from mt3x.models import Mt3Model, T5Config, get_config
from mt3x.t5x_checkpoint import (flatten_params, load_t5x_params, parse_config_option,
                                 read_mt3x_params, unflatten_params)
from mt3x.trainer import Checkpointer, CheckpointOptions, restore_params

from .conftest import BF16, write_t5x_fixture

README = Path(__file__).resolve().parents[2] / "README.md"
#: A tiny network whose attention splits 2 heads x 8 (query kernels [32, 16]).
TWO_BY_EIGHT = dataclasses.replace(get_config("tiny", dropout_rate=0.0), num_heads=2, head_dim=8)
#: float32 bit patterns around bfloat16 ties: (f32 bits, bf16 bits by round-to-nearest-even).
TIES = [(0x3F808000, 0x3F80), (0x3F818000, 0x3F82), (0x3F80C000, 0x3F81), (0x3F807FFF, 0x3F80),
        (0xBF818000, 0xBF82), (0xBF808000, 0xBF80), (0x7F7FFFFF, 0x7F80)]


def _abstract(params):
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), params)


def _rne_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns of float32 `values` by round-to-nearest-even, from the bits."""
    bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def _mt3x_run(directory: Path, params, step: int) -> Path:
    """An mt3x checkpoint dir `directory/checkpoints/<step>` holding `params`."""
    from mt3x.t5x_checkpoint.convert import _fresh_train_state

    state = _fresh_train_state(params, seed=0).replace(step=jnp.asarray(step, jnp.int32))
    checkpointer = Checkpointer(directory.absolute() / "checkpoints",
                                CheckpointOptions(async_save=False))
    try:
        checkpointer.save(state, data_state={}, meta={"gin_config": ""})
        checkpointer.wait()
    finally:
        checkpointer.close()
    return directory


@pytest.fixture(scope="module")
def two_by_eight(tiny_setup):
    """(model, float32 params) of the 2-heads-x-8 network, random."""
    batch = tiny_setup[2]
    model = Mt3Model(TWO_BY_EIGHT, inputs=tiny_setup[0].inputs)
    params = jax.tree.map(np.asarray, nn.unbox(jax.jit(model.init)(jax.random.key(5), batch)))
    assert params["encoder"]["layers_0"]["attention"]["query"]["kernel"].shape == (32, 16)
    return model, params


# ---- relative paths -------------------------------------------------------------------------
def test_export_and_import_work_with_relative_paths(tmp_path, tiny_setup, monkeypatch, capsys):
    params = tiny_setup[1]
    _mt3x_run(tmp_path / "runs" / "x", params, step=3)
    root = tmp_path / "t5x_orbax"
    manager = ocp.CheckpointManager(
        root, options=ocp.CheckpointManagerOptions(step_prefix="checkpoint"),
        item_handlers={"state": ocp.PyTreeCheckpointHandler(use_ocdbt=True)})
    manager.save(5, args=ocp.args.Composite(state=ocp.args.PyTreeSave(
        {"target": params, "state": {"step": np.int32(5)}})))
    manager.wait_until_finished()
    manager.close()
    monkeypatch.chdir(tmp_path)
    assert export_t5x.main(["--checkpoint", "runs/x", "--out", "y"]) == 0
    assert "wrote " in capsys.readouterr().out
    assert (tmp_path / "y" / "checkpoint_3" / "checkpoint").is_file()
    for src, dst in (("t5x_orbax/checkpoint_5", "from_orbax"), ("t5x_orbax", "from_orbax_dir"),
                     ("y", "from_export")):
        assert import_t5x.main([src, dst, "--config", "tiny"]) == 0, capsys.readouterr().err
        restored = restore_params(dst, _abstract(params))
        for name, array in flatten_params(params).items():
            np.testing.assert_array_equal(flatten_params(restored)[name], array, err_msg=name)


# ---- --config: the head count ---------------------------------------------------------------
def test_auto_refuses_to_guess_the_head_split(tmp_path, two_by_eight, capsys):
    write_t5x_fixture(tmp_path / "t5x" / "checkpoint_9", two_by_eight[1])
    assert import_t5x.main([str(tmp_path / "t5x"), str(tmp_path / "dst")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert "cannot tell the attention head count" in err and "heads * head_dim = 16" in err
    assert "--config heads=N" in err and not (tmp_path / "dst").exists()


@pytest.mark.parametrize("how", ["heads", "head_dim", "sizes", "config_gin", "gin_block"])
def test_the_head_split_comes_from_config_or_t5x_config_gin(tmp_path, tiny_setup, two_by_eight,
                                                            how, capsys):
    model, params = two_by_eight
    batch = tiny_setup[2]

    def loss_of(network, tree, data):
        return float(network.loss(tree, data, None, deterministic=True)[0])

    stored = write_t5x_fixture(tmp_path / "t5x" / "checkpoint_9", params)
    argv = [str(tmp_path / "t5x"), str(tmp_path / "dst")]
    if how == "heads":
        argv += ["--config", "heads=2"]
    elif how == "head_dim":
        argv += ["--config", "auto,head_dim=8"]
    elif how == "sizes":
        argv += ["--config", "emb=32,heads=2,head_dim=8,mlp=64,enc_layers=1,dec_layers=1,"
                             "vocab=1536"]
    elif how == "config_gin":  # t5x's operative config in the model directory
        (tmp_path / "t5x" / "config.gin").write_text(
            "# Parameters for network.T5Config:\nnetwork.T5Config.emb_dim = 32\n"
            "network.T5Config.head_dim = 8\nnetwork.T5Config.num_heads = 2\n")
    else:  # the block form of MT3's gin files
        (tmp_path / "t5x" / "config.gin").write_text(
            "network.T5Config:\n  vocab_size = 1536\n  num_heads = 2  # two\n  head_dim = 8\n")
    assert import_t5x.main(argv) == 0, capsys.readouterr().err
    spec = json.loads((tmp_path / "dst" / "mt3x_model.json").read_text())
    assert (spec["config"]["num_heads"], spec["config"]["head_dim"]) == (2, 8)
    assert spec["vocab"] == "mt3" and spec["format"] == "mt3x-model/1"
    restored = restore_params(tmp_path / "dst", _abstract(params))
    expected = unflatten_params({n: a.astype(np.float32) for n, a in stored.items()})
    imported = Mt3Model(T5Config(**{**spec["config"], "dropout_rate": 0.0}),
                        inputs=model.inputs)
    assert loss_of(imported, restored, batch) == loss_of(model, expected, batch)
    # The split matters: the same arrays as 1 head x 16 compute another function.
    one_head = Mt3Model(dataclasses.replace(TWO_BY_EIGHT, num_heads=1, head_dim=16),
                        inputs=model.inputs)
    assert loss_of(one_head, restored, batch) != loss_of(model, expected, batch)


@pytest.mark.parametrize("config,message", [
    ("heads=3", r"3 heads x head_dim 5 does not match the checkpoint's attention width 16"),
    ("heads=two", r"heads='two' is not a positive integer"),
    ("heads=0", r"heads='0' is not a positive integer"),
    ("layers=2", r"unknown size 'layers'; expected one of vocab, emb, heads"),
    ("tiny,heads=2,heads=4", r"'heads' is given twice"),
    ("small", r"unknown config 'small'"),
    ("heads=2,tiny", r"'tiny' is not key=value"),
    ("heads=2,,", r"empty item"),
    ("tiny,heads=4", r"does not fit model config 'tiny\+custom'.*mis-shaped array "
                     r"target\.decoder\.layers_0\.encoder_decoder_attention\.key\.kernel"),
])
def test_bad_config_is_a_clear_error(tmp_path, two_by_eight, config, message, capsys):
    write_t5x_fixture(tmp_path / "ck", two_by_eight[1])
    assert import_t5x.main([str(tmp_path / "ck"), str(tmp_path / "dst"), "--config", config]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert re.search(message, err, re.DOTALL), err
    assert not (tmp_path / "dst").exists()


def test_config_option_syntax():
    assert parse_config_option("auto").base == "auto"
    assert parse_config_option("mt3").sizes == {}
    request = parse_config_option(" mt3 , heads = 8, num_encoder_layers=4")
    assert request.base == "mt3" and request.sizes == {"num_heads": 8, "num_encoder_layers": 4}


# ---- export: the checkpoint_<step> t5x restores ---------------------------------------------
def _readme_t5x_commands() -> tuple[list[str], str, str]:
    """(export argv, the restore path and the assignment map) from the README's t5x recipe."""
    text = README.read_text()
    section = text[text.index("### Start from the official MT3 weights"):
                   text.index("### Export for inference")]
    export = re.search(r"^mt3x-export-t5x (.+?)\s+#", section, re.MULTILINE).group(1).split()
    paths = set(re.findall(r"INITIAL_CHECKPOINT_PATH=\"'([^']+)'\"", section))
    paths |= set(re.findall(r"RestoreCheckpointConfig\(path='([^']+)'", section))
    maps = set(re.findall(r"assignment_map=\"?(\(\(r?'[^']+', None\),\))", section))
    assert len(paths) == 1 and len(maps) == 2, (paths, maps)
    assert "fallback_to_scratch=True" in section
    return export, paths.pop(), maps.pop()


def test_readme_recipe_exports_what_t5x_restores(tmp_path, tiny_setup, monkeypatch, capsys):
    params = jax.tree.map(np.copy, tiny_setup[1])
    kernel = params["decoder"]["logits_dense"]["kernel"]
    kernel.reshape(-1)[:len(TIES)] = np.array([f for f, _ in TIES], np.uint32).view(np.float32)
    export_argv, restore_path, assignment_map = _readme_t5x_commands()
    checkpoint = export_argv[export_argv.index("--checkpoint") + 1]
    out = export_argv[export_argv.index("--out") + 1]
    monkeypatch.chdir(tmp_path)
    _mt3x_run(Path(checkpoint), params, step=1234)
    assert export_t5x.main(export_argv) == 0
    printed = capsys.readouterr().out
    step_dir = Path(restore_path.replace("<step>", "1234"))
    assert step_dir == Path(out) / "checkpoint_1234" and str(step_dir) in printed

    # The files t5x reads: the msgpack (t5x's own decoder) and TensorStore specs whose kvstore
    # path t5x joins onto the step directory.
    tree = serialization.msgpack_restore((step_dir / "checkpoint").read_bytes())
    assert tree["version"] == 3 and int(tree["optimizer"]["state"]["step"]) == 1234
    flat = traverse_util.flatten_dict(tree["optimizer"], sep="/")
    ours, step = read_mt3x_params(checkpoint)
    assert step == 1234
    names = flatten_params(ours)
    for name, array in names.items():
        spec = tree["optimizer"]["target"]
        for part in name.split("."):
            spec = spec[part]
        assert spec["kvstore"] == {"driver": "file", "path": f"target.{name}/"}
        assert spec["metadata"]["compressor"] == {"id": "gzip", "level": 1}
        assert spec["dtype"] == "float32"
        opened = dict(spec, kvstore={"driver": "file",
                                     "path": str(step_dir.absolute() / spec["kvstore"]["path"])})
        np.testing.assert_array_equal(ts.open(opened).result().read().result(), array)
    # t5x's assignment map (re.fullmatch on '/'-joined keys) drops the whole state, keeps target.
    pattern = eval(assignment_map)[0][0]  # noqa: S307 - a literal from our README
    state_keys = [k for k in flat if k.startswith("state/")]
    assert state_keys and all(re.fullmatch(pattern, k) for k in state_keys)
    assert not any(re.fullmatch(pattern, k) for k in flat if k.startswith("target/"))

    # mt3x reads it back bit-exactly (float32), by the model directory or the step folder.
    for src in (Path(out), step_dir):
        again, name, _, report = load_t5x_params(src)
        assert name == "tiny" and report.step == 1234 and report.cast == {}
        for key, array in flatten_params(again).items():
            assert array.tobytes() == names[key].tobytes(), key

    # bfloat16 on request: rounded to nearest even, as t5x's SaveCheckpointConfig(dtype) does.
    assert export_t5x.main(export_argv + ["--dtype", "bfloat16", "--out", "bf16"]) == 0
    bf16_dir = Path("bf16") / "checkpoint_1234"
    tree = serialization.msgpack_restore((bf16_dir / "checkpoint").read_bytes())
    spec = tree["optimizer"]["target"]["decoder"]["logits_dense"]["kernel"]
    assert spec["dtype"] == "bfloat16"
    stored = ts.open(dict(spec, kvstore={"driver": "file", "path": str(
        bf16_dir.absolute() / spec["kvstore"]["path"])})).result().read().result()
    assert stored.dtype == ml_dtypes.bfloat16
    bits = stored.view(np.uint16).reshape(-1)
    assert [int(b) for b in bits[:len(TIES)]] == [b for _, b in TIES]
    np.testing.assert_array_equal(bits, _rne_bfloat16_bits(kernel.reshape(-1)))
    loaded, _, _, report = load_t5x_params("bf16")
    assert report.cast[BF16] == "bfloat16->float32" and len(report.cast) == len(names)
    assert sum(p.stat().st_size for p in bf16_dir.rglob("*") if p.is_file()) < \
        sum(p.stat().st_size for p in step_dir.rglob("*") if p.is_file())


def test_export_refuses_an_existing_step_and_a_file_out(tmp_path, tiny_setup, capsys):
    run = _mt3x_run(tmp_path / "run", tiny_setup[1], step=2)
    out = tmp_path / "out"
    assert export_t5x.main(["--checkpoint", str(run), "--out", str(out)]) == 0
    before = (out / "checkpoint_2" / "checkpoint").read_bytes()
    assert export_t5x.main(["--checkpoint", str(run), "--out", str(out)]) == 2
    assert f"t5x checkpoint {out / 'checkpoint_2'} exists and is not empty" in \
        capsys.readouterr().err
    assert (out / "checkpoint_2" / "checkpoint").read_bytes() == before
    (tmp_path / "file").write_text("x")
    assert export_t5x.main(["--checkpoint", str(run), "--out", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err
    assert f"output {tmp_path / 'file'} exists and is a file" in err and "Traceback" not in err
    assert export_t5x.main(["--checkpoint", str(run), "--out", str(out), "--overwrite"]) == 0
