"""MT3 inference bundles: `export_mt3_bundle` -> `mt3x-transcribe --bundle` in a fresh process
that cannot import the model code gives the checkpoint's notes; bfloat16 bundles are half the
size and compute what the model computes with rounded weights; `decoder_step` reproduces the
exported greedy decoder; bad bundles fail clearly; `--stems` renders one WAV per instrument."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import pretty_midi
import pytest
import soundfile

from tests import mt3_testdata as data
from mt3x.bundles.bundle import BundleError, read_bundle
from mt3x.bundles.mt3_export import export_mt3_bundle
from mt3x.bundles.mt3_runtime import BundleTranscriber
from mt3x.cli import export as export_cli
from mt3x.cli import transcribe as cli
from mt3x.t5x_checkpoint.convert import write_mt3x_params_checkpoint
from mt3x.transcription.checkpoint import load_model_and_params, model_spec
from mt3x.transcription.files import transcribe_files
from mt3x.transcription.resynthesis import instrument_slug, render_stems
from mt3x.transcription.segments import audio_to_segments

RANDOM_PARAMS_SEED = 3
BLOCKED = ("mt3x.models", "mt3x.trainer", "mt3x.runs", "mt3x.transcription.checkpoint",
           "mt3x.transcription.decoder", "flax", "orbax", "optax", "tensorflow", "seqio",
           "separation")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A checkpoint of the tiny network with seeded random parameters (written as an import
    would): unlike a few training steps, it emits notes on the demo mixture, so the comparison of
    checkpoint and bundle transcriptions is not between two empty files."""
    model = data.tiny_model()
    batch = {"encoder_input_tokens": np.zeros((1, 256, 128), np.float32)}
    params = nn.unbox(model.init(jax.random.key(RANDOM_PARAMS_SEED), batch))
    workdir = tmp_path_factory.mktemp("random_tiny") / "run"
    return write_mt3x_params_checkpoint(workdir, params, meta={"gin_config": ""},
                                        model_spec=model_spec(model, "mt3"))


@pytest.fixture(scope="module")
def demo_mix(tmp_path_factory) -> Path:
    return next((data.tiny_dataset(tmp_path_factory) / "test").glob("Track*/mix.flac"))


@pytest.fixture(scope="module")
def bundles(run, tmp_path_factory) -> dict[str, Path]:
    """The float32 bundle through `mt3x-export` (the CLI), the bfloat16 one through the library."""
    root = tmp_path_factory.mktemp("bundles")
    assert export_cli.main(["--checkpoint", str(run), "--out", str(root / "float32")]) == 0
    return {"float32": root / "float32",
            "bfloat16": export_mt3_bundle(run, root / "bfloat16", dtype="bfloat16")}


def _notes(midi: Path) -> list[tuple]:
    pm = pretty_midi.PrettyMIDI(str(midi))
    return sorted((i.program, i.is_drum, n.pitch, round(n.start, 4), round(n.end, 4), n.velocity)
                  for i in pm.instruments for n in i.notes)


def test_bundle_in_a_fresh_process_without_model_code_gives_the_checkpoints_notes(
        run, bundles, demo_mix, tmp_path, capsys):
    assert cli.main([str(demo_mix), "--checkpoint", str(run), "--out", str(tmp_path / "ckpt"),
                     "--no_pianoroll"]) == 0, capsys.readouterr().err
    script = textwrap.dedent(f"""
        import importlib.abc, json, sys
        BLOCKED = {BLOCKED!r}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in BLOCKED or name.startswith(BLOCKED):
                    raise ImportError('blocked in this test: ' + name)
        sys.meta_path.insert(0, Block())
        from mt3x.cli import transcribe
        code = transcribe.main([{str(demo_mix)!r}, '--bundle', {str(bundles['float32'])!r},
                                '--out', {str(tmp_path / 'bundle')!r}])
        print(json.dumps({{'code': code, 'modules': sorted(sys.modules)}}))
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    hidden = run.with_name(run.name + "_hidden")
    run.rename(hidden)                       # the bundle alone: its checkpoint is out of reach
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=env, timeout=600)
    finally:
        hidden.rename(run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, proc.stderr[-3000:]
    assert not [m for m in report["modules"] if m.startswith(BLOCKED)]
    assert "(step 0, float32 params" in proc.stdout
    from_checkpoint = _notes(tmp_path / "ckpt" / "mix.mid")
    assert from_checkpoint, "the tiny model transcribes no notes; the comparison would be empty"
    assert _notes(tmp_path / "bundle" / "mix.mid") == from_checkpoint
    assert (tmp_path / "bundle" / "mix.png").read_bytes()[:4] == b"\x89PNG"


def test_manifest_describes_polymorphic_multi_platform_functions(run, bundles, capsys, tmp_path):
    manifest = json.loads((bundles["float32"] / "bundle.json").read_text())
    assert manifest["kind"] == "mt3" and manifest["source"]["step"] == 0
    assert manifest["model"]["config"]["emb_dim"] == 32 and manifest["codec"]["name"] == "mt3"
    encoder = manifest["functions"]["encoder"]
    assert encoder["platforms"] == ["cpu", "cuda", "tpu"]
    assert encoder["inputs"][-2:] == ["float32[b,256,128]", "int32[b]"]    # symbolic batch
    assert manifest["functions"]["decoder"]["outputs"] == [f"int32[b,{data.TINY_DECODE_LENGTH}]"]
    # the CLI: a shorter decoder on request; MT3 summary printed
    assert export_cli.main(["--checkpoint", str(run), "--out", str(tmp_path / "short"),
                            "--max_decode_length", "16", "--platforms", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "kind mt3, " in printed and "decoder.jax_exported" in printed
    short = json.loads((tmp_path / "short" / "bundle.json").read_text())
    assert short["functions"]["decoder"]["outputs"] == ["int32[b,16]"]
    assert short["functions"]["decoder"]["platforms"] == ["cpu"]


def test_bfloat16_bundle_is_half_size_and_equals_the_model_with_rounded_weights_on_1_or_8_devices(
        run, bundles):
    f32, bf16 = (read_bundle(bundles[d], function_names=()) for d in ("float32", "bfloat16"))
    size = {d: (bundles[d] / "params.safetensors").stat().st_size for d in bundles}
    assert 0.49 < size["bfloat16"] / size["float32"] < 0.51
    leaves32, leaves16 = jax.tree.leaves(f32.params), jax.tree.leaves(bf16.params)
    assert {str(a.dtype) for a in leaves16} == {"bfloat16"}
    for a32, a16 in zip(leaves32, leaves16):
        np.testing.assert_array_equal(a32.astype(a16.dtype), a16)          # rounded, not cut
    model, _, _, _ = load_model_and_params(run)
    rounded = jax.tree.map(lambda a: np.asarray(a, np.float32), bf16.params)
    audio = np.random.default_rng(0).standard_normal(3 * 16000).astype(np.float32) * 0.1
    frames, _, lengths = audio_to_segments(audio)                    # last segment: 119 frames
    batch = {"encoder_input_tokens": frames, "encoder_input_lengths": lengths}
    expected = np.asarray(jax.jit(model.predict)(rounded, batch))
    sharded = BundleTranscriber(bundles["bfloat16"], batch_size=2)     # 8 CPU devices
    assert sharded.batch_size == 8
    np.testing.assert_array_equal(sharded.decode_segments(frames, lengths), expected)
    one_device = BundleTranscriber(bundles["bfloat16"], batch_size=2, devices=jax.devices()[:1])
    np.testing.assert_array_equal(one_device.decode_segments(frames, lengths), expected)


def test_decoder_step_loop_reproduces_the_exported_greedy_decoder(bundles):
    bundle = read_bundle(bundles["float32"])
    manifest = bundle.manifest
    frames = np.random.default_rng(1).standard_normal((2, 256, 128)).astype(np.float32) * 0.1
    params = bundle.params
    cross_kv = bundle.functions["encoder"].call(params, frames, np.array([256, 100], np.int32))
    tokens = np.asarray(bundle.functions["decoder"].call(params, cross_kv))
    shape = [2 if d == "b" else d for d in manifest["decoder_cache"]["shape"]]
    dtype = manifest["decoder_cache"]["dtype"]
    cache = tuple((np.zeros(shape, dtype), np.zeros(shape, dtype))
                  for _ in range(manifest["decoder_cache"]["layers"]))
    step = jax.jit(bundle.functions["decoder_step"].call)
    previous = np.zeros(2, np.int32)
    for position in range(8):
        logits, cache = step(params, previous, np.int32(position), cache, cross_kv)
        previous = np.asarray(logits).argmax(-1).astype(np.int32)
        np.testing.assert_array_equal(previous, tokens[:, position])


def test_bad_bundles_fail_clearly(run, bundles, tmp_path, demo_mix, capsys):
    with pytest.raises(BundleError, match="does not exist"):
        BundleTranscriber(tmp_path / "nope")
    with pytest.raises(BundleError, match="is not an mt3x bundle"):
        BundleTranscriber(run)                                  # a checkpoint, not a bundle
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(bundles["float32"], broken)
    params = broken / "params.safetensors"
    params.write_bytes(params.read_bytes()[:1000])
    with pytest.raises(BundleError, match="params.safetensors: checksum"):
        BundleTranscriber(broken)
    foreign = tmp_path / "foreign"
    shutil.copytree(bundles["float32"], foreign)
    manifest = json.loads((foreign / "bundle.json").read_text())
    manifest["codec"]["steps_per_second"] = 50
    (foreign / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"codec differs .*steps_per_second"):
        BundleTranscriber(foreign)
    manifest["kind"] = "separator"
    (foreign / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="holds a 'separator' bundle"):
        BundleTranscriber(foreign)
    out = str(tmp_path / "out")
    assert cli.main([str(demo_mix), "--bundle", str(bundles["float32"]), "--out", out,
                     "--step", "3"]) == 2
    assert "--step: fixed when the bundle was exported" in capsys.readouterr().err
    assert cli.main([str(demo_mix), "--bundle", str(broken), "--out", out]) == 2
    assert "checksum" in capsys.readouterr().err
    with pytest.raises(BundleError, match="already exists"):
        export_mt3_bundle(run, bundles["float32"])
    with pytest.raises(BundleError, match="parameter dtype 'float16'"):
        export_mt3_bundle(run, tmp_path / "f16", dtype="float16")
    assert not list(tmp_path.glob("*f16*"))                     # nothing half-written


def test_bundle_lowered_for_another_platform_is_refused(run, tmp_path):
    export_mt3_bundle(run, tmp_path / "tpu", platforms=("tpu",))
    with pytest.raises(BundleError, match=r"lowered for \['tpu'\], not for this machine's 'cpu'"):
        BundleTranscriber(tmp_path / "tpu")


def test_render_stems_writes_one_aligned_wav_per_instrument_summing_to_the_mix(tmp_path):
    ns = data.reference_notes(seconds=3.0)
    rate = 16000
    stems = render_stems(ns, tmp_path / "song", num_samples=3 * rate, sample_rate=rate)
    names = [s.path.name for s in stems]
    assert names == ["acoustic_grand_piano.wav", "electric_bass_finger.wav", "drums.wav",
                     "mix.wav"]
    audio = {s.path.name: soundfile.read(s.path, dtype="float32")[0] for s in stems}
    assert all(a.size == 3 * rate for a in audio.values())
    total = sum(audio[n] for n in names[:-1])
    np.testing.assert_allclose(total, audio["mix.wav"], atol=4 / 32768)   # 16-bit rounding
    assert 0.85 < np.abs(audio["mix.wav"]).max() <= 10 ** (-1 / 20) + 1e-4  # peak at -1 dBFS
    for stem in stems[:-1]:
        notes = [n for n in ns.notes if n.is_drum == stem.is_drum
                 and (stem.is_drum or n.program == stem.program)]
        assert stem.num_notes == len(notes)
        first = int(min(n.start_time for n in notes) * rate)
        wav = audio[stem.path.name]
        assert np.abs(wav[:max(first - 160, 0)]).max(initial=0.0) < 1e-3    # silent before
        assert np.abs(wav[first:first + rate // 4]).max() > 0.01              # sounds after
    assert render_stems(type(ns)(), tmp_path / "empty", num_samples=rate) == []
    assert instrument_slug("Electric Bass (finger)") == "electric_bass_finger"


def test_cli_stems_from_a_bundle(bundles, demo_mix, tmp_path, capsys):
    transcriber = BundleTranscriber(bundles["float32"])
    written = transcribe_files([demo_mix], transcriber=transcriber, out_dir=tmp_path / "lib",
                               pianoroll=False, stems=True, stems_sample_rate=16000)
    programs = {(n.is_drum, 0 if n.is_drum else n.program) for n in
                transcriber.transcribe_many([soundfile.read(demo_mix, dtype="float32")[0]])[0]
                .note_sequence.notes}
    assert len(written[0].stems) == len(programs) + 1
    assert sorted(p.name for p in (tmp_path / "lib" / "mix").iterdir()) == sorted(
        s.path.name for s in written[0].stems)
    code = cli.main([str(demo_mix), "--bundle", str(bundles["float32"]), "--out",
                     str(tmp_path / "cli"), "--stems", "--soundfont", str(tmp_path / "no.sf2")])
    assert code == 2 and "no.sf2: soundfont not found" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()                       # failed before writing
