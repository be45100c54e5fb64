"""bench/gpu_suite.py --quick runs without TensorFlow, seqio and soundfile; bench/train_mt3.py's
FLOP count agrees with XLA's."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mt3x.models import Transformer, get_config
from mt3x.models.losses import weighted_loss_and_metrics

REPO = Path(__file__).resolve().parents[2]


def _load_bench(name: str):
    """Loads bench/<name>.py by path: bench/ is not a package, and putting it on sys.path would
    let a bench module shadow a package of the same name."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_mt3 = _load_bench("train_mt3")

BLOCKED = ("tensorflow", "seqio", "soundfile")

# Installed as `sitecustomize` on PYTHONPATH, so that the suite's worker processes (train rows,
# torch) run with the same blocker. Every blocked import attempt is logged.
SITECUSTOMIZE = textwrap.dedent("""
    import importlib.abc, os, sys
    BLOCKED = {blocked!r}
    LOG = os.environ["MT3X_BLOCK_LOG"]
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in BLOCKED:
                with open(LOG, "a") as log:
                    log.write(name + "\\n")
                raise ImportError('blocked in this test: ' + name)
    sys.meta_path.insert(0, Block())
""")


def _positive_numbers(row: dict, keys: tuple[str, ...]) -> None:
    for key in keys:
        assert isinstance(row[key], (int, float)) and row[key] > 0, (key, row)


def test_quick_suite_runs_without_tensorflow_seqio_soundfile(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(blocked=BLOCKED))
    log = tmp_path / "blocked.log"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "MT3X_BLOCK_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    env.pop("MT3X_COMPILATION_CACHE", None)
    out = tmp_path / "quick.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_suite.py"), "--quick",
                           "--out", str(out), "--budget_s", "600"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert {"meta", "train", "train_flops_per_example", "flop_formula", "decode", "spectral",
            "grain", "torch"} <= set(report)
    assert report["meta"]["quick"] and report["meta"]["platform"] == "cpu"
    assert [(row["dtype"], row["batch"]) for row in report["train"]] == [
        ("float32", 2), ("bfloat16", 2)]
    for row in report["train"]:
        assert "error" not in row, row
        _positive_numbers(row, ("examples_per_s", "compile_s", "warm_compile_s",
                                "flops_per_example", "step_s"))
        assert row["mfu"] is None and row["peak_tflops"] is None  # CPU: n/a unless given
        assert row["attention_impl"] == "reference"  # 'auto' off a GPU
    assert [row["dtype"] for row in report["decode"]] == ["float32", "bfloat16"]
    for row in report["decode"]:
        _positive_numbers(row, ("tokens_per_s", "decode_s", "encode_s", "compile_s"))
    assert len(report["spectral"]) == 2
    for row in report["spectral"]:
        _positive_numbers(row, ("audio_seconds_per_s", "run_s"))
    assert report["grain"]["available"] in (True, False)
    assert "train step" in proc.stdout and "tokens/s" in proc.stdout
    assert "grain pipeline" in proc.stdout
    assert "pytorch comparison" in proc.stdout or report["torch"]["available"]
    # Imports tried anyway were optional checks (etils looks for TensorFlow when JAX opens the
    # compilation cache), or the run would have failed.
    print("blocked import attempts:", log.read_text() if log.exists() else "none")


def test_analytic_flops_match_xla_cost_analysis():
    """The formula against XLA's count of the same forward + backward pass on CPU (XLA also
    counts elementwise work, hence a few percent more)."""
    cfg = get_config("tiny", dropout_rate=0.0, num_encoder_layers=2, num_decoder_layers=2,
                     emb_dim=64, mlp_dim=128)
    frames, length = 32, 48
    net = Transformer(cfg)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(1, frames, cfg.input_depth)), jnp.float32)
    tokens = jnp.asarray(rng.integers(2, 100, (1, length)), jnp.int32)
    params = net.init(jax.random.key(0), x, tokens, tokens, enable_dropout=False)

    def loss(params, x):
        logits = net.apply(params, x, tokens, tokens, enable_dropout=False)
        return weighted_loss_and_metrics(logits, tokens, jnp.ones(tokens.shape))[0]

    analysis = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, x).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    analytic = train_mt3.analytic_flops(cfg, frames, length)
    assert analytic["total"] == pytest.approx(sum(v for k, v in analytic.items() if k != "total"))
    assert analytic["total"] == pytest.approx(float(analysis["flops"]), rel=0.10)


def test_mt3_flops_and_peak_defaults():
    terms = train_mt3.analytic_flops(get_config("mt3"))
    assert terms["total"] / 1e9 == pytest.approx(225.1, abs=0.1)  # issue 14's ~225 GFLOP
    # Decoder self-attention is the largest attention term at 1024 tokens vs 256 frames.
    assert terms["decoder_self_attention"] > terms["cross_attention"] > terms["encoder_attention"]
    assert train_mt3.default_peak_tflops("NVIDIA H200", "bfloat16") == 989.0
    assert train_mt3.default_peak_tflops("NVIDIA H100 PCIe", "bfloat16") == 756.0
    assert train_mt3.default_peak_tflops("NVIDIA A100-SXM4-80GB", "float32") == 156.0
    assert train_mt3.default_peak_tflops("cpu", "bfloat16") is None
