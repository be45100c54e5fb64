"""mt3x: MT3 transcription and Flax source separation in native JAX.

One distribution, three import packages: `mt3x` (transcription and everything shared),
`separation` (separators) and `tagging` (the instrument tagger).

`pip install mt3x` is the lean core: enough to train MT3 from an offline cache through the Grain
input path and to run inference bundles, with no TensorFlow. What else a job needs comes as
extras (`EXTRAS` below; the README's install section has the table):

    [seqio]        the seqio / tf.data input path and TFDS (TensorFlow)
    [tensorboard]  the TensorBoard viewer (runs write event files with tensorboardX, no TF)
    [data]         building datasets: music21's corpus, FluidSynth rendering
    [separation]   BSSEval v4 for the separators (museval, fast-bss-eval)
    [tagging]      the LightGBM instrument tagger
    [cuda] [cuda13] [tpu]   JAX's accelerator plugins, in the same version range as jax
    [all]          every extra above but the accelerator ones;  [test]  pytest and friends

setup.py states compatible version RANGES (the jax/flax releases of current CPU and GPU images,
Python 3.11 and 3.12); the exact versions tested together are pinned in `requirements.lock`,
which `./run` installs as a constraints file. The lists are module-level so that
tests/test_install.py can read them without running `setup()`.
"""

from setuptools import find_packages, setup

#: JAX releases mt3x runs on (jax and jaxlib move together; the accelerator extras follow them).
JAX_RANGE = ">=0.10.2,<0.12"
#: Flax releases mt3x runs on.
FLAX_RANGE = ">=0.12.8,<0.12.11"

#: The lean core: train from a cache with Grain, run inference bundles and checkpoints. No TF.
BASE_REQUIREMENTS = [
    f"jax{JAX_RANGE}",
    f"jaxlib{JAX_RANGE}",
    f"flax{FLAX_RANGE}",
    "ml_dtypes>=0.5",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12",
    "tensorstore>=0.1.70",
    "gin-config>=0.5.0,<0.6",
    "numpy>=2.0",
    "scipy>=1.14",
    "note-seq>=0.0.5,<0.1",
    "pretty_midi>=0.2.11",
    "mido>=1.3",
    "mir_eval>=0.8",
    "soundfile>=0.13",
    "matplotlib>=3.9",
    "tqdm>=4.66",
    "pyyaml>=6.0",
    "msgpack>=1.0",
    "safetensors>=0.4",
    "tensorboardX>=2.6",
    "grain>=0.2.18",
    "array_record>=0.8",
]

#: Optional capabilities; `all` (every non-accelerator extra) is added below.
EXTRAS = {
    "seqio": ["seqio>=0.0.20,<0.1", "tensorflow>=2.21", "tensorflow-datasets>=4.9"],
    "tensorboard": ["tensorboard>=2.21"],   # the viewer; runs write event files with tensorboardX
    "data": ["music21>=9", "pyfluidsynth>=1.3"],
    "separation": ["museval>=0.4", "fast-bss-eval>=0.1.4"],
    "tagging": ["lightgbm>=4.5", "scikit-learn>=1.5"],
    "test": ["pytest>=8", "pytest-xdist>=3", "hypothesis>=6"],
    # JAX's plugins for the same jax range (CUDA wheels bundle their libraries).
    "cuda": [f"jax[cuda12]{JAX_RANGE}"],
    "cuda13": [f"jax[cuda13]{JAX_RANGE}"],
    "tpu": [f"jax[tpu]{JAX_RANGE}"],
}
#: Extras that pick hardware or test tools, left out of `all`.
NOT_IN_ALL = ("test", "cuda", "cuda13", "tpu")
EXTRAS["all"] = sorted({req for name, reqs in EXTRAS.items() if name not in NOT_IN_ALL
                        for req in reqs})

CONSOLE_SCRIPTS = [
    "mt3x-demo=mt3x.cli.demo:main",
    "mt3x-data=mt3x.cli.data:main",
    "mt3x-eval-midi=mt3x.cli.eval_midi:main",
    "mt3x-transcribe=mt3x.cli.transcribe:main",
    "mt3x-tag=tagging.cli:main",
    "mt3x-import-t5x=mt3x.cli.import_t5x:main",
    "mt3x-export-t5x=mt3x.cli.export_t5x:main",
    "mt3x-separate=separation.cli.separate:main",
    "mt3x-export=mt3x.cli.export:main",
]

if __name__ == "__main__":  # pip and setuptools run this file as __main__
    setup(
        name="mt3x",
        version="0.1.0",
        description="Multi-instrument music transcription (MT3) and source separation in JAX/Flax",
        python_requires=">=3.11,<3.13",
        packages=find_packages(include=["mt3x", "mt3x.*", "separation", "separation.*",
                                        "tagging", "tagging.*"]),
        include_package_data=True,
        install_requires=BASE_REQUIREMENTS,
        extras_require=EXTRAS,
        entry_points={
            "console_scripts": CONSOLE_SCRIPTS,
            # Capabilities separation adds to mt3x's tools (mt3x never imports it; see mt3x.plugins).
            "mt3x.plugins": [
                "separation=separation.plugin:register",
            ],
        },
    )
