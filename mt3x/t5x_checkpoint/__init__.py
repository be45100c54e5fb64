"""mt3x.t5x_checkpoint: read and write t5x checkpoints without t5x or TensorFlow.

```
import_t5x_checkpoint(src, dst, config='auto', step=None, backend='auto', overwrite=False)
    -> ImportReport      # legacy msgpack+zarr or Orbax t5x -> mt3x run dir (checkpoints/0,
                         # mt3x_model.json, t5x_import_report.json)
load_t5x_params(src, config='auto', ...) -> (params, config_name, T5Config, ImportReport)
parse_config_option('auto' | 'mt3' | 'heads=8' | 'emb=512,heads=8,...') -> ConfigRequest
export_t5x_checkpoint(checkpoint, out, step=None, dtype='float32'|'bfloat16',
                      inline_small=False, overwrite=False)
    -> ExportResult(path=out/checkpoint_<step>, step, dtype, storage)   # legacy t5x layout
read_mt3x_params(checkpoint, step=None) -> (params, step)
read_legacy_checkpoint(dir, backend='auto') -> LegacyCheckpoint   # lazy leaves by dotted name
write_legacy_checkpoint(dir, target, step=, inline=...) -> {name: storage}
read_zarr(folder, backend='auto'|'tensorstore'|'numpy') -> np.ndarray; write_zarr(folder, array)
read_orbax_arrays(state_dir) -> {dotted name: np.ndarray}
expected_param_shapes(config) -> {name: shape}; infer_config(shapes) -> (name, T5Config)
T5xCheckpointError(Mt3xError)
```
CLIs: `mt3x-import-t5x SRC DST [--config auto|NAME|SIZES]`,
`mt3x-export-t5x --checkpoint DIR --out DIR [--dtype bfloat16] [--inline-small]`.
"""

from mt3x.t5x_checkpoint.config_option import (ConfigRequest, HeadHints, head_count_hints,
                                               parse_config_option, resolve_config)
from mt3x.t5x_checkpoint.convert import (REPORT_FILE, ExportResult, T5xSource,
                                         export_t5x_checkpoint, import_t5x_checkpoint,
                                         load_t5x_params, model_spec_for, open_t5x_checkpoint,
                                         read_mt3x_params, write_mt3x_params_checkpoint)
from mt3x.t5x_checkpoint.errors import T5xCheckpointError
from mt3x.t5x_checkpoint.legacy import (CHECKPOINT_FILE, LegacyCheckpoint, LegacyLeaf,
                                        pack_inline_array, read_legacy_checkpoint,
                                        write_legacy_checkpoint)
from mt3x.t5x_checkpoint.mapping import (ImportReport, expected_param_shapes, flatten_params,
                                         infer_config, unflatten_params)
from mt3x.t5x_checkpoint.orbax_layout import read_orbax_arrays, read_orbax_shapes
from mt3x.t5x_checkpoint.zarr_arrays import (read_zarr, read_zarr_numpy, read_zarr_tensorstore,
                                             write_zarr)

__all__ = [
    "CHECKPOINT_FILE", "REPORT_FILE", "ConfigRequest", "ExportResult", "HeadHints",
    "ImportReport", "LegacyCheckpoint", "LegacyLeaf", "T5xCheckpointError", "T5xSource",
    "expected_param_shapes", "export_t5x_checkpoint", "flatten_params", "head_count_hints",
    "import_t5x_checkpoint", "infer_config", "load_t5x_params", "model_spec_for",
    "open_t5x_checkpoint", "pack_inline_array", "parse_config_option", "read_legacy_checkpoint",
    "read_mt3x_params", "read_orbax_arrays", "read_orbax_shapes", "read_zarr", "read_zarr_numpy",
    "read_zarr_tensorstore", "resolve_config", "unflatten_params", "write_legacy_checkpoint",
    "write_mt3x_params_checkpoint", "write_zarr",
]
