"""Refusals that name the array or path, and the mapping onto the `mt3`/`ismir2021` trees."""

from __future__ import annotations

import json
import math

import msgpack
import numpy as np
import pytest

from mt3x.cli import export_t5x, import_t5x
from mt3x.models import get_config
from mt3x.t5x_checkpoint import (T5xCheckpointError, expected_param_shapes, infer_config,
                                 load_t5x_params, pack_inline_array)
from mt3x.t5x_checkpoint.mapping import ImportReport, check_shapes

from .conftest import MULTI_CHUNK, write_t5x_fixture


def test_missing_array_is_refused_by_name(tmp_path, tiny_setup, capsys):
    directory = tmp_path / "ck"
    write_t5x_fixture(directory, tiny_setup[1], drop=("encoder.layers_0.mlp.wo.kernel",))
    with pytest.raises(T5xCheckpointError,
                       match=r"missing array target\.encoder\.layers_0\.mlp\.wo\.kernel "
                             r"\(expected shape \[64, 32\]\)"):
        load_t5x_params(directory, config="tiny")
    assert import_t5x.main([str(directory), str(tmp_path / "dst")]) == 2
    assert "target.encoder.layers_0.mlp.wo.kernel" in capsys.readouterr().err
    assert not (tmp_path / "dst").exists()


def test_mis_shaped_and_extra_arrays_are_refused_by_name(tmp_path, tiny_setup):
    directory = tmp_path / "ck"
    write_t5x_fixture(directory, tiny_setup[1], replace={
        "encoder.encoder_norm.scale": np.ones(31, np.float32),
        "decoder.relpos_bias.rel_embedding": np.zeros((2, 32), np.float32)})
    with pytest.raises(T5xCheckpointError) as info:
        load_t5x_params(directory, config="tiny")
    message = str(info.value)
    assert "mis-shaped array target.encoder.encoder_norm.scale: expected shape [32], found [31]" \
        in message
    assert "extra array target.decoder.relpos_bias.rel_embedding (shape [2, 32])" in message


def test_wrong_config_is_refused(tmp_path, tiny_setup):
    directory = tmp_path / "ck"
    write_t5x_fixture(directory, tiny_setup[1])
    with pytest.raises(T5xCheckpointError,
                       match=r"config 'ismir2021' \(28 mis-shaped, 161 missing, 0 extra arrays\); "
                             r"its shapes fit config 'tiny':\n  mis-shaped array "
                             r"target\.decoder\.decoder_norm\.scale: expected shape \[512\], "
                             r"found \[32\]"):
        load_t5x_params(directory, config="ismir2021")


@pytest.mark.parametrize("make", ["empty", "other_files", "not_msgpack", "not_t5x", "missing"])
def test_a_directory_that_is_not_a_checkpoint_is_named(tmp_path, make):
    src = tmp_path / "src"
    if make != "missing":
        src.mkdir()
    if make == "other_files":
        (src / "notes.txt").write_text("hello")
    if make == "not_msgpack":
        (src / "checkpoint").write_bytes(b"\xc1\xc1 not msgpack")
    if make == "not_t5x":
        (src / "checkpoint").write_bytes(msgpack.packb({"params": 1}))
    with pytest.raises(T5xCheckpointError) as info:
        load_t5x_params(src)
    assert str(src) in str(info.value)


def test_truncated_chunk_in_a_checkpoint_names_the_chunk(tmp_path, tiny_setup):
    directory = tmp_path / "ck"
    write_t5x_fixture(directory, tiny_setup[1])
    chunk = directory / f"target.{MULTI_CHUNK}" / "2.1"
    chunk.write_bytes(chunk.read_bytes()[:-30])
    with pytest.raises(T5xCheckpointError, match=str(chunk)):
        load_t5x_params(directory, backend="numpy")
    with pytest.raises(T5xCheckpointError, match=f"target.{MULTI_CHUNK}"):
        load_t5x_params(directory, backend="tensorstore")


def test_unknown_inline_dtype_names_file_and_array(tmp_path, tiny_setup):
    directory = tmp_path / "ck"
    write_t5x_fixture(directory, tiny_setup[1])
    tree = msgpack.unpackb((directory / "checkpoint").read_bytes(), strict_map_key=False)
    scale = tree["optimizer"]["target"]["decoder"]["decoder_norm"]
    scale["scale"] = msgpack.ExtType(1, msgpack.packb(([2], "float13", b"\0" * 4)))
    (directory / "checkpoint").write_bytes(msgpack.packb(tree))
    with pytest.raises(T5xCheckpointError,
                       match=r"checkpoint: array 'target\.decoder\.decoder_norm\.scale': unknown "
                             r"or unsupported dtype 'float13'"):
        load_t5x_params(directory)


def test_unknown_zarr_dtype_names_the_zarray(tmp_path, tiny_setup):
    directory = tmp_path / "ck"
    write_t5x_fixture(directory, tiny_setup[1])
    zarray = directory / "target.encoder.encoder_norm.scale" / ".zarray"
    header = json.loads(zarray.read_text())
    zarray.write_text(json.dumps(dict(header, dtype="<x3")))
    with pytest.raises(T5xCheckpointError, match=f"{zarray}: unknown or unsupported dtype"):
        load_t5x_params(directory)


def test_missing_zarr_folder_is_named(tmp_path, tiny_setup):
    import shutil

    directory = tmp_path / "ck"
    write_t5x_fixture(directory, tiny_setup[1])
    shutil.rmtree(directory / "target.encoder.encoder_norm.scale")
    with pytest.raises(T5xCheckpointError,
                       match=r"'target\.encoder\.encoder_norm\.scale'.*zarr folder .* is missing"):
        load_t5x_params(directory)


def test_existing_destination_and_bad_export_source_are_refused(tmp_path, tiny_setup, capsys):
    directory = tmp_path / "ck"
    write_t5x_fixture(directory, tiny_setup[1])
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "keep.txt").write_text("x")
    assert import_t5x.main([str(directory), str(dst)]) == 2
    assert "not empty" in capsys.readouterr().err and (dst / "keep.txt").exists()
    assert export_t5x.main(["--checkpoint", str(directory), "--out", str(tmp_path / "o")]) == 2
    assert f"{directory} is not an mt3x checkpoint" in capsys.readouterr().err


def test_inline_array_with_too_few_bytes_is_refused(tmp_path, tiny_setup):
    directory = tmp_path / "ck"
    write_t5x_fixture(directory, tiny_setup[1])
    tree = msgpack.unpackb((directory / "checkpoint").read_bytes(), strict_map_key=False)
    tree["optimizer"]["target"]["decoder"]["decoder_norm"]["scale"] = msgpack.ExtType(
        1, msgpack.packb(([32], "float32", b"\0" * 100)))
    (directory / "checkpoint").write_bytes(msgpack.packb(tree))
    with pytest.raises(T5xCheckpointError, match=r"needs 128 bytes, holds 100"):
        load_t5x_params(directory)


def test_pack_inline_array_matches_flax():
    from flax import serialization

    for value in (np.arange(6, dtype=np.float32).reshape(2, 3), np.int32(7)):
        scalar = np.ndim(value) == 0
        ours = msgpack.packb({"a": pack_inline_array(value, scalar=scalar)})
        assert ours == serialization.msgpack_serialize({"a": value})


def _mt3_param_count(vocab: int, d: int = 512, joined: int = 384, mlp: int = 1024,
                     layers: int = 8) -> int:
    attention = 4 * d * joined
    gated_mlp = 3 * d * mlp
    encoder = layers * (attention + gated_mlp + 2 * d) + d + 512 * d
    decoder = layers * (2 * attention + gated_mlp + 3 * d) + d + 2 * vocab * d
    return encoder + decoder


@pytest.mark.parametrize("name,vocab", [("mt3", 1536), ("ismir2021", 1664)])
def test_mt3_trees_have_the_released_shapes(name, vocab):
    shapes = expected_param_shapes(get_config(name))
    assert len(shapes) == 189
    assert sum(n.endswith(".scale") for n in shapes) == 42   # RMSNorm scales (8 + 8 layers)
    assert shapes["decoder.token_embedder.embedding"] == (vocab, 512)
    assert shapes["decoder.logits_dense.kernel"] == (512, vocab)
    assert shapes["encoder.continuous_inputs_projection.kernel"] == (512, 512)
    assert shapes["decoder.layers_7.encoder_decoder_attention.query.kernel"] == (512, 384)
    assert shapes["encoder.layers_7.mlp.wi_1.kernel"] == (512, 1024)
    assert sum(math.prod(s) for s in shapes.values()) == _mt3_param_count(vocab)
    assert infer_config(shapes)[0] == name


def test_unnamed_sizes_are_inferred_from_shapes():
    shapes = expected_param_shapes(get_config("small_cpu", vocab_size=1000, num_decoder_layers=3))
    with pytest.raises(T5xCheckpointError, match=r"cannot tell the attention head count.*"
                                                 r"heads \* head_dim = 256.*--config heads=N"):
        infer_config(shapes)  # 4 x 64, 8 x 32, ... have the same shapes: never guessed
    name, config = infer_config(shapes, num_heads=4)
    assert name == "inferred"
    assert (config.vocab_size, config.emb_dim, config.num_heads, config.head_dim,
            config.mlp_dim, config.num_encoder_layers, config.num_decoder_layers) == \
        (1000, 256, 4, 64, 512, 2, 3)
    assert expected_param_shapes(config) == shapes


def test_report_lists_every_kind_of_mismatch():
    expected = {"a.kernel": (2, 3), "b.scale": (3,)}
    report = ImportReport(source="x", layout="legacy", config_name="c")
    check_shapes({"a.kernel": (3, 2), "c.bias": (4,)}, expected, report)
    assert report.missing == {"b.scale": (3,)}
    assert report.mis_shaped == {"a.kernel": ((2, 3), (3, 2))}
    assert report.extra == {"c.bias": (4,)} and not report.ok
