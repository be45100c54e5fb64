"""The bundle runtime's promise follows from the module graph: the model-free transcription
modules and `mt3x.bundles.mt3_runtime` import no model code, trainer, checkpoint side, Flax,
Orbax, Optax, TensorFlow or seqio, and hide no imports inside functions that could bypass that."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mt3x

RUNTIME_MODULES = ("mt3x.transcription.errors", "mt3x.transcription.segments",
                   "mt3x.transcription.batching", "mt3x.transcription.notes",
                   "mt3x.transcription.files", "mt3x.transcription.midi_output",
                   "mt3x.transcription.pianoroll", "mt3x.transcription.resynthesis",
                   "mt3x.transcription.metrics", "mt3x.bundles.bundle",
                   "mt3x.bundles.safetensors", "mt3x.bundles.mt3_runtime")
FORBIDDEN = ("mt3x.models", "mt3x.trainer", "mt3x.transcription.checkpoint",
             "mt3x.transcription.decoder", "mt3x.transcription.evaluation", "flax", "orbax",
             "optax", "tensorflow", "seqio")


def _loaded(names: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n in forbidden or n.startswith(tuple(f + "." for f in
                                                                          forbidden)))


def test_runtime_modules_import_no_model_trainer_or_tensorflow_code():
    script = textwrap.dedent(f"""
        import importlib, json, sys
        for name in {list(RUNTIME_MODULES)!r}:
            importlib.import_module(name)
        runtime = sorted(sys.modules)
        importlib.import_module('mt3x.transcription.checkpoint')   # the guard's control
        print(json.dumps({{'runtime': runtime, 'checkpoint': sorted(sys.modules)}}))
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=600, cwd=Path(mt3x.__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(RUNTIME_MODULES) <= set(report["runtime"])
    assert _loaded(report["runtime"], FORBIDDEN) == []
    # The same check sees the checkpoint side's imports, so an empty list above means something.
    assert {"mt3x.models", "mt3x.trainer", "mt3x.transcription.checkpoint", "flax",
            "orbax"} <= set(_loaded(report["checkpoint"], FORBIDDEN))


def test_runtime_and_checkpoint_modules_import_only_at_their_tops():
    """A function-level import would escape the sys.modules check above (and hide a dependency
    from the module graph); every transcription and bundle module imports at its top."""
    root = Path(mt3x.__file__).parent
    hidden = []
    for path in sorted([*(root / "transcription").glob("*.py"), *(root / "bundles").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                hidden += [f"{path.name}:{inner.lineno}" for inner in ast.walk(node)
                           if isinstance(inner, (ast.Import, ast.ImportFrom))]
    assert len(list((root / "transcription").glob("*.py"))) >= 12
    assert hidden == []
