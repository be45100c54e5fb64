"""Inference bundles: a trained model as a folder that runs without the training code.

A bundle holds `bundle.json` (format, kind, configuration, signatures, checksums),
`params.safetensors` (float32 or bfloat16 parameters) and one `<function>.jax_exported` file per
function, serialised with `jax.export` (StableHLO; batch-size polymorphic; lowered for CPU, CUDA
and TPU by default).

- `mt3x.bundles.bundle`: the format (write/read, checks, dtype casts). Imports jax only.
- `mt3x.bundles.safetensors`: the parameter file (the safetensors layout). numpy only.
- `mt3x.bundles.mt3_export` (needs the model code) / `mt3x.bundles.mt3_runtime` (does not).
- `separation.bundle_export` / `separation.bundle_runtime`: the same for separators (mt3x reaches
  the exporter only through `mt3x.plugins`; it never imports separation).

Nothing is imported here, so loading a runtime never pulls in the model code.
"""
