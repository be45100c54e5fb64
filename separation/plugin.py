"""The separation package's place in mt3x's tools, declared in setup.py as the entry point
`mt3x.plugins: separation = separation.plugin:register` (see `mt3x.plugins`).

- bundle exporter: a run directory holding `separator.json` -> a 'separator' bundle
  (`mt3x-export --checkpoint runs/sep/unet --out bundles/unet`), by
  `separation.bundle_export.export_separator_bundle`;
- demo stage `separate`: trains both separators briefly on the demo dataset, scores them on its
  test split next to the mixture and ideal-mask rows and writes listenable stems of a test mixture
  under `<out>/separation/` (`separation.experiment.run_experiment`; `--steps` is MT3's, not
  used here).
"""

from __future__ import annotations

import time

from mt3x.plugins import DemoContext, Registry
from separation.bundle_export import export_separator_bundle
from separation.bundle_runtime import SEPARATOR_KIND
from separation.checkpoints import SEPARATOR_FILE
from separation.experiment import ExperimentConfig, run_experiment

DEMO_STAGE_DESCRIPTION = ("train both separators briefly (least-squares-initialised context DNN, "
                          "conv U-Net), score them on the test split next to the mixture and "
                          "ideal-mask rows, and write listenable stems of a test mixture "
                          "(`separation/`)")


def run_demo_stage(context: DemoContext) -> None:
    """The demo's `separate` stage: `run_experiment` on `context.data_root` (4 stems), scored
    out of domain too on `context.ood_root` when the demo built one."""
    out = context.out / "separation"
    t0 = time.perf_counter()
    summary = run_experiment(context.data_root, out,
                             ExperimentConfig(instruments="4stem", seed=context.seed),
                             ood_root=context.ood_root)
    print(f"[demo] separate: trained and scored in {time.perf_counter() - t0:.0f} s; "
          f"stems under {out / 'stems'}")
    print(summary.get("domains_table", summary["table"]))


def register(registry: Registry) -> None:
    """Adds the separator bundle exporter and the `separate` demo stage to `registry`."""
    registry.add_bundle_exporter(SEPARATOR_KIND, SEPARATOR_FILE, export_separator_bundle)
    registry.add_demo_stage("separate", DEMO_STAGE_DESCRIPTION, run_demo_stage)
