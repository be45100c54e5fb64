"""Speed of the tagging features and models.

Prints, after a warm-up (the compile is timed separately):
- snippet features: 1-second snippets per wall second through the jitted kernel (batch 64);
- the same features with a numpy/librosa reference pipeline (STFT + the same band matrix);
- LightGBM: training time of one booster on N synthetic snippets, and prediction speed.

    python bench/tagging_speed.py [--snippets 2048] [--batch 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _best_of(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--snippets", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import jax
    import librosa
    import lightgbm as lgb

    from tagging.features import (FeatureConfig, band_filterbank, compute_features,
                                             feature_names)

    config = FeatureConfig()
    rng = np.random.default_rng(0)
    snippets = rng.normal(0, 0.1, (args.snippets, config.snippet_samples)).astype(np.float32)
    start = time.perf_counter()
    compute_features(snippets[:args.batch], config, batch_size=args.batch)
    compile_s = time.perf_counter() - start
    ours = _best_of(lambda: compute_features(snippets, config, batch_size=args.batch),
                    args.repeats)
    weights = band_filterbank(config)

    def reference():
        for snippet in snippets:
            spec = librosa.stft(snippet, n_fft=config.n_fft, hop_length=config.hop_length)
            power = np.abs(spec.T) ** 2
            bands = 10 * np.log10(np.maximum(power @ weights, 1e-10))
            np.stack([bands.mean(0), bands.std(0), bands.max(0)])

    ref = _best_of(reference, 1)
    print(f"devices: {jax.devices()[0].platform} x{jax.device_count()}")
    print(f"features ({len(feature_names(config))} per snippet): compile {compile_s:.2f} s; "
          f"{args.snippets / ours:,.0f} snippets/s ({args.snippets / ours:,.0f} s of audio per s); "
          f"librosa band-energy reference {args.snippets / ref:,.0f} snippets/s")

    features = compute_features(snippets, config, batch_size=args.batch)
    labels = (features[:, 5] > np.median(features[:, 5])).astype(np.float32)
    params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 15, "verbose": -1,
              "num_threads": 1, "seed": 0, "deterministic": True, "force_row_wise": True}
    start = time.perf_counter()
    booster = lgb.train(params, lgb.Dataset(features, label=labels), num_boost_round=200)
    train_s = time.perf_counter() - start
    predict_s = _best_of(lambda: booster.predict(features), args.repeats)
    print(f"lightgbm: 200 rounds on {args.snippets} snippets in {train_s:.2f} s (1 thread); "
          f"predict {args.snippets / predict_s:,.0f} snippets/s")


if __name__ == "__main__":
    main()
