"""Source separators (linear-context DNN, conv U-Net) on mt3x: models, data, training, metrics,
oracles, bundles and the `mt3x-separate` CLI (`separation.cli`). Builds on mt3x, which reaches it
only through the plugin registered in `separation.plugin` (see `mt3x.plugins`)."""
