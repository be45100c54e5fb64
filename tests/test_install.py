"""The lean install: setup.py's base requirements hold no TensorFlow, every extra resolves, and the
bundle runtime and the trainer import with every optional distribution blocked."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]

#: Distributions that must stay out of `pip install mt3x`.
HEAVY = ("tensorflow", "tensorflow-datasets", "seqio", "music21", "pyfluidsynth", "lightgbm",
         "clu", "tensorboard")
#: Import name of every distribution an extra adds (a new extra must say how it is imported, so
#: that the blocker below keeps covering everything outside the base).
IMPORT_NAMES = {
    "seqio": "seqio", "tensorflow": "tensorflow", "tensorflow-datasets": "tensorflow_datasets",
    "tensorboard": "tensorboard", "music21": "music21",
    "pyfluidsynth": "fluidsynth", "museval": "museval", "fast-bss-eval": "fast_bss_eval",
    "lightgbm": "lightgbm", "scikit-learn": "sklearn",
}
#: Extras that choose hardware or test tools: not capabilities, not in `all`.
HARDWARE_AND_TEST = ("test", "cuda", "cuda13", "tpu")

#: What the lean install must import: the bundle runtime, the model-free transcription runtime,
#: audio I/O, the codec, the models and the trainer.
LEAN_MODULES = (
    "mt3x.bundles", "mt3x.bundles.bundle", "mt3x.bundles.mt3_runtime", "mt3x.bundles.mt3_export",
    "mt3x.transcription.segments", "mt3x.transcription.batching", "mt3x.transcription.notes",
    "mt3x.transcription.files", "mt3x.transcription.midi_output", "mt3x.audio.io", "mt3x.codec",
    "mt3x.models", "mt3x.trainer", "mt3x.trainer.loop", "mt3x.trainer.checkpoints",
    "mt3x.trainer.reporting", "mt3x.util.compilation_cache", "mt3x.util.quiet",
    "mt3x.t5x_checkpoint", "mt3x.cli.transcribe", "mt3x.cli.export", "mt3x.cli.import_t5x",
    "mt3x.cli.export_t5x",
)


def _load_setup() -> ModuleType:
    """setup.py's module-level lists; `setup()` itself only runs as __main__."""
    spec = importlib.util.spec_from_file_location("mt3x_setup", REPO / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _name(requirement: str) -> str:
    """The distribution name of a requirement string, lower-case, '_' as '-'."""
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


SETUP = _load_setup()


def test_base_requirements_hold_no_tensorflow_or_data_tools():
    base = {_name(r) for r in SETUP.BASE_REQUIREMENTS}
    assert not base & set(HEAVY), sorted(base & set(HEAVY))
    for needed in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "gin-config", "grain",
                   "array-record", "numpy", "note-seq", "soundfile"):
        assert needed in base, needed


def test_version_ranges_admit_current_gpu_images():
    reqs = {_name(r): Requirement(r) for r in SETUP.BASE_REQUIREMENTS}
    for version in ("0.10.2", "0.11.0", "0.11.2"):
        assert reqs["jax"].specifier.contains(version) and reqs["jaxlib"].specifier.contains(version)
    assert not reqs["jax"].specifier.contains("0.12.0")
    for version in ("0.12.8", "0.12.9", "0.12.10"):
        assert reqs["flax"].specifier.contains(version), version
    text = (REPO / "setup.py").read_text()
    assert "python_requires=\">=3.11,<3.13\"" in text
    for extra in ("cuda", "cuda13", "tpu"):  # accelerator plugins follow jax's range
        (req,) = SETUP.EXTRAS[extra]
        assert Requirement(req).name == "jax" and str(Requirement(req).specifier) == \
            str(reqs["jax"].specifier)


def test_every_extra_resolves_and_all_is_the_union():
    for needed in ("seqio", "data", "separation", "tagging", "tensorboard", "cuda", "tpu", "all",
                   "test"):
        assert needed in SETUP.EXTRAS, needed
    union = set()
    for extra, reqs in SETUP.EXTRAS.items():
        assert reqs, extra
        for req in reqs:
            Requirement(req)  # parses
        if extra not in HARDWARE_AND_TEST + ("all",):
            union |= set(reqs)
            for req in reqs:
                assert _name(req) in IMPORT_NAMES, f"[{extra}] {req}: add its import name"
    assert set(SETUP.EXTRAS["all"]) == union
    assert {"tensorflow", "seqio", "tensorflow-datasets"} <= {_name(r) for r in
                                                              SETUP.EXTRAS["seqio"]}
    assert {"music21", "pyfluidsynth"} <= {_name(r) for r in SETUP.EXTRAS["data"]}


def test_run_script_installs_everything():
    run = (REPO / "run").read_text()
    assert '-e ".[all,test]"' in run


SITECUSTOMIZE = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = {blocked!r}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in BLOCKED:
                raise ImportError('not in the lean install: ' + name)
    sys.meta_path.insert(0, Block())
""")


def test_bundle_runtime_and_trainer_import_without_optional_distributions(tmp_path):
    blocked = sorted(set(IMPORT_NAMES.values()))
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE.format(blocked=blocked))
    script = textwrap.dedent(f"""
        import importlib, sys
        for name in {LEAN_MODULES!r}:
            importlib.import_module(name)
        try:
            import tensorflow
        except ImportError as err:
            print('blocker on:', err)
        print(sorted(n for n in {blocked!r} if n in sys.modules))
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-2] == "blocker on: not in the lean install: tensorflow"  # the blocker works
    assert lines[-1] == "[]"
