"""Guards of the package layout (../shared/DESIGN.md): the rules the module graph must keep.

- `mt3x` never imports `separation` or `tagging` (they import mt3x; mt3x reaches separators through
  `mt3x.plugins`);
- the codec and the per-example task functions import neither JAX nor TensorFlow (nor seqio), so a
  TF-free input pipeline can reuse them;
- the bundle runtime never imports the model code, the trainer, Flax, Orbax, Optax, TensorFlow or
  seqio;
- no module passes 600 lines (STYLE.md: one job per module).

Static rules read every import statement, also those inside functions; the runtime rules import the
module in a fresh interpreter and look at `sys.modules`.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mt3x", "separation", "tagging")
MAX_LINES = 600


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def _imported_names(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import statement in `path`, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _loaded_modules(module: str) -> set[str]:
    """Top-level names in sys.modules after importing `module` in a fresh interpreter."""
    code = (f"import json, sys; import {module}; "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, f"import {module} failed:\n{out.stderr[-2000:]}"
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_mt3x_never_imports_separation_or_tagging():
    offending = [f"{path.relative_to(REPO)}:{line}: {name}"
                 for path in _modules("mt3x") for line, name in _imported_names(path)
                 if name.split(".")[0] in ("separation", "tagging")]
    assert not offending, "mt3x imports separation/tagging:\n" + "\n".join(offending)


def test_tagging_is_not_part_of_separation():
    offending = [f"{path.relative_to(REPO)}:{line}: {name}"
                 for path in _modules("tagging") for line, name in _imported_names(path)
                 if name.split(".")[0] == "separation"]
    assert not offending, "tagging imports separation:\n" + "\n".join(offending)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_passes_600_lines(package):
    long = {str(p.relative_to(REPO)): n for p in _modules(package)
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_static_scan_sees_imports_inside_functions(tmp_path):
    """The scanner must catch an import hidden in a function body, or the rules above prove little."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from separation import data\n    import tagging.cli\n")
    assert [name for _, name in _imported_names(probe)] == ["separation", "tagging.cli"]


NUMPY_ONLY = ("mt3x.codec", "mt3x.tasks.examples", "mt3x.audio.mt3_config")
HEAVY = ("jax", "jaxlib", "tensorflow", "seqio", "flax")


@pytest.mark.parametrize("module", NUMPY_ONLY)
def test_numpy_layers_import_no_jax_or_tensorflow(module):
    loaded = _loaded_modules(module)
    assert module in loaded
    assert not loaded & set(HEAVY), f"{module} pulls in {sorted(loaded & set(HEAVY))}"


RUNTIME_FORBIDDEN = ("mt3x.models", "mt3x.trainer", "mt3x.runs", "mt3x.tasks", "flax", "orbax",
                     "optax", "tensorflow", "seqio")


@pytest.mark.parametrize("module", ["mt3x.bundles.mt3_runtime"])
def test_bundle_runtime_imports_no_model_code(module):
    loaded = _loaded_modules(module)
    assert module in loaded
    bad = sorted(name for name in loaded
                 if any(name == f or name.startswith(f + ".") for f in RUNTIME_FORBIDDEN))
    assert not bad, f"{module} imports {bad}"
