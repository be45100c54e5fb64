"""Legacy and Orbax t5x checkpoints -> mt3x checkpoints -> legacy t5x, on the `tiny` model."""

from __future__ import annotations

import json

import jax
import ml_dtypes
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorstore as ts
from flax import linen as nn
from flax import serialization

from mt3x.cli import export_t5x, import_t5x
from mt3x.t5x_checkpoint import (REPORT_FILE, export_t5x_checkpoint, flatten_params,
                                 import_t5x_checkpoint, load_t5x_params, read_mt3x_params)
from mt3x.trainer import restore_params

from .conftest import BF16, INLINE, MULTI_CHUNK, write_t5x_fixture

TINY_ARRAYS = 28


def _abstract(params):
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), params)


def _assert_same(flat_a, flat_b):
    assert sorted(flat_a) == sorted(flat_b)
    for name in flat_a:
        np.testing.assert_array_equal(np.asarray(flat_a[name]), np.asarray(flat_b[name]),
                                      err_msg=name)


@pytest.mark.parametrize("backend", ["tensorstore", "numpy"])
def test_legacy_fixture_loads_exactly(legacy_ckpt, backend):
    directory, stored = legacy_ckpt
    params, name, _, report = load_t5x_params(directory, backend=backend)
    assert name == "tiny" and report.ok and report.step == 1234 and report.layout == "legacy"
    flat = flatten_params(params)
    assert all(a.dtype == np.float32 for a in flat.values())
    _assert_same(flat, {n: a.astype(np.float32) for n, a in stored.items()})
    assert report.storage == {"inline": 1, "zarr": TINY_ARRAYS - 1}
    assert report.cast == {BF16: "bfloat16->float32"}
    assert sorted(report.skipped) == sorted([
        "state.step", "state.param_states.encoder.layers_0.mlp.wo.kernel.v_row",
        "state.param_states.encoder.layers_0.mlp.wo.kernel.v_col",
        f"state.param_states.{INLINE}.v"])
    assert len(list((directory / f"target.{MULTI_CHUNK}").glob("[0-9]*"))) == 12


def test_import_cli_writes_a_checkpoint_whose_loss_matches(legacy_ckpt, tiny_setup, tmp_path,
                                                           capsys):
    directory, stored = legacy_ckpt
    model, params, batch, loss = tiny_setup
    dst = tmp_path / "imported"
    assert import_t5x.main([str(directory), str(dst), "--config", "tiny"]) == 0
    assert "28 arrays imported" in capsys.readouterr().out
    report = json.loads((dst / REPORT_FILE).read_text())
    assert report["ok"] and report["config_name"] == "tiny"
    restored = restore_params(dst, _abstract(params))
    direct = jax.tree.map(np.asarray, params)
    direct_flat = flatten_params(direct)
    direct_flat[BF16] = direct_flat[BF16].astype(ml_dtypes.bfloat16).astype(np.float32)
    _assert_same(flatten_params(restored), direct_flat)
    loaded_directly = jax.tree.map(lambda p: p, direct)
    loaded_directly["decoder"]["token_embedder"]["embedding"] = direct_flat[BF16]
    assert float(loss(restored, batch)) == float(loss(loaded_directly, batch))
    assert np.isfinite(float(loss(restored, batch)))


def test_round_trip_import_export_import_is_identical(legacy_ckpt, tmp_path):
    directory, _ = legacy_ckpt
    first = tmp_path / "ours"
    import_t5x_checkpoint(directory, first)
    ours, step = read_mt3x_params(first)
    assert step == 0
    for inline_small in (False, True):
        out = tmp_path / f"legacy_{inline_small}"
        argv = ["--checkpoint", str(first), "--out", str(out)] + \
            (["--inline-small"] if inline_small else [])
        assert export_t5x.main(argv) == 0
        again, _, _, report = load_t5x_params(out)
        _assert_same(flatten_params(again), flatten_params(ours))
        out = out / "checkpoint_0"  # the step folder t5x's restore takes
        scales = sum(n.endswith(".scale") for n in flatten_params(ours))
        assert report.storage == ({"inline": scales, "zarr": TINY_ARRAYS - scales}
                                  if inline_small else {"zarr": TINY_ARRAYS})
        # The export is readable by the reference decoders: flax's msgpack and TensorStore.
        tree = serialization.msgpack_restore((out / "checkpoint").read_bytes())
        assert tree["version"] == 3 and int(tree["optimizer"]["state"]["step"]) == 0
        kernel = tree["optimizer"]["target"]["decoder"]["logits_dense"]["kernel"]
        assert kernel["kvstore"]["path"] == "target.decoder.logits_dense.kernel/"
        spec = dict(kernel, kvstore={"driver": "file",
                                     "path": str(out / kernel["kvstore"]["path"])})
        np.testing.assert_array_equal(ts.open(spec).result().read().result(),
                                      ours["decoder"]["logits_dense"]["kernel"])
        zarray = json.loads((out / "target.decoder.logits_dense.kernel" / ".zarray").read_text())
        assert zarray["compressor"]["id"] == "gzip"
        if inline_small:
            scale = tree["optimizer"]["target"]["decoder"]["decoder_norm"]["scale"]
            np.testing.assert_array_equal(scale, ours["decoder"]["decoder_norm"]["scale"])


def test_t5x_orbax_layout_imports(tmp_path, tiny_setup):
    params = tiny_setup[1]
    root = tmp_path / "t5x_orbax"
    manager = ocp.CheckpointManager(
        root, options=ocp.CheckpointManagerOptions(step_prefix="checkpoint"),
        item_handlers={"state": ocp.PyTreeCheckpointHandler(use_ocdbt=True)})
    state = {"target": params, "state": {"step": np.int32(5), "param_states": {
        "decoder": {"decoder_norm": {"scale": {"v": np.ones(32, np.float32)}}}}}}
    manager.save(5, args=ocp.args.Composite(state=ocp.args.PyTreeSave(state)))
    manager.wait_until_finished()
    manager.close()
    for src in (root, root / "checkpoint_5", root / "checkpoint_5" / "state"):
        loaded, name, _, report = load_t5x_params(src)
        assert name == "tiny" and report.layout == "orbax" and report.step == 5
        assert sorted(report.skipped) == ["state.param_states.decoder.decoder_norm.scale.v",
                                          "state.step"]
        _assert_same(flatten_params(loaded), flatten_params(params))


def test_spec_paths_of_older_t5x_without_zarray(tmp_path, tiny_setup):
    """'gfile' kvstore driver, trailing '/' and no `.zarray` (as in t5x's own test data)."""
    directory = tmp_path / "old"
    stored = write_t5x_fixture(directory, tiny_setup[1], driver="gfile")
    for zarray in directory.glob("*/.zarray"):
        zarray.unlink()
    loaded, _, _, report = load_t5x_params(directory)
    _assert_same(flatten_params(loaded), {n: a.astype(np.float32) for n, a in stored.items()})


def test_training_fine_tunes_from_the_import(legacy_ckpt, tiny_setup, tmp_path):
    # In CI (no longer marked slow): ~12 s of CPU on top of the module's setup; a smaller
    # network or one device compiles no faster (the train step's compile dominates).
    from mt3x.trainer import train

    model, params, batch, loss = tiny_setup
    dst = tmp_path / "imported"
    import_t5x_checkpoint(legacy_ckpt[0], dst)
    imported = restore_params(dst, _abstract(params))
    result = train(model=model, train_data=[batch], workdir=tmp_path / "run", num_steps=1,
                   init_params_from=dst, show_progress=False, tensorboard=False)
    # Dropout is off, so step 1's loss is the loss of the imported params.
    np.testing.assert_allclose(result.losses[1], float(loss(imported, batch)), rtol=1e-6)
    # ... not of the trainer's own random init (seed 0): the comparison can fail.
    own = jax.jit(model.init)(jax.random.key(0), batch)
    assert abs(float(loss(nn.unbox(own), batch)) - result.losses[1]) > 1e-3

