"""mt3x: MT3 transcription and Flax source separation in native JAX.

One distribution, two import packages (`mt3x`, `separation`). The exact versions tested together
are pinned in `requirements.lock`; `./run` installs with it as a constraints file.
"""

from setuptools import find_packages, setup

JAX_VERSION = "0.10.2"

setup(
    name="mt3x",
    version="0.1.0",
    description="Multi-instrument music transcription (MT3) and source separation in JAX/Flax",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["mt3x", "mt3x.*", "separation", "separation.*", "tagging", "tagging.*"]),
    include_package_data=True,
    install_requires=[
        f"jax=={JAX_VERSION}",
        f"jaxlib=={JAX_VERSION}",
        "flax==0.12.8",
        "ml_dtypes>=0.5",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12",
        "seqio==0.0.20",
        "tensorflow>=2.21",
        "tensorflow-datasets>=4.9",
        "note-seq==0.0.5",
        "gin-config==0.5.0",
        "clu>=0.0.12",
        "tensorboard>=2.21",
        "mir_eval>=0.8",
        "pretty_midi>=0.2.11",
        "mido>=1.3",
        "soundfile>=0.13",
        "librosa>=0.11",
        "scipy>=1.14",
        "numpy>=2.0",
        "matplotlib>=3.9",
        "tqdm>=4.66",
        "pyyaml>=6.0",
        "music21>=9",
        "pyfluidsynth>=1.3",
        "lightgbm>=4.5",
        "scikit-learn>=1.5",
        "museval>=0.4",
        "fast-bss-eval>=0.1.4",
        "tensorstore>=0.1.70",
        "msgpack>=1.0",
        "grain>=0.2.18",
        "array_record>=0.8",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3", "hypothesis>=6"],
        # The JAX CUDA plugin that matches the pinned jaxlib (CUDA 12 wheels bundle their libraries).
        "cuda": [f"jax[cuda12]=={JAX_VERSION}"],
        "tpu": [f"jax[tpu]=={JAX_VERSION}"],
    },
    entry_points={
        "console_scripts": [
            "mt3x-demo=mt3x.cli.demo:main",
            "mt3x-data=mt3x.cli.data:main",
            "mt3x-eval-midi=mt3x.cli.eval_midi:main",
            "mt3x-transcribe=mt3x.cli.transcribe:main",
            "mt3x-tag=tagging.cli:main",
            "mt3x-import-t5x=mt3x.cli.import_t5x:main",
            "mt3x-export-t5x=mt3x.cli.export_t5x:main",
            "mt3x-separate=separation.cli.separate:main",
            "mt3x-export=mt3x.cli.export:main",
        ],
        # Capabilities separation adds to mt3x's tools (mt3x never imports it; see mt3x.plugins).
        "mt3x.plugins": [
            "separation=separation.plugin:register",
        ],
    },
)
