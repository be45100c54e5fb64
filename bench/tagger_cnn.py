"""A learned tagger as a yardstick for `mt3x-tag`'s LightGBM: a small CNN on log-mel snippets.

Issue 13 asks whether the LightGBM tagger's weak out-of-domain ranking (micro ROC AUC about
0.79 against the constant prior's 0.77) comes from its hand-made spectral statistics. This script
trains a learned representation on exactly the same snippets and labels and scores it with
`tagging.scoring`'s definitions, next to the same baselines, in domain and out of domain:

    python bench/tagger_cnn.py --data data/synth8h --ood-data data/ood-eval --epochs 6 \\
        --out runs/tagging_cnn.json

Data: every 1-second snippet of `--data`'s train / validation / test splits (and the
`--ood-split` of each `--ood-data`, which may be repeated), labelled by
`tagging.examples.labelled_snippets` (the energy rule, Slakh's `inst_class` groups, as
`mt3x-tag train`'s defaults). Input: 64 Slaney mel bands (30 Hz-8 kHz)
of a 1024-point STFT with hop 256 at 16 kHz (the shared `mt3x.audio` kernels): f32[63, 64]
powers, log-compressed and referenced to the snippet's maximum (`normalise_log_mel`), so the
level of a recording does not matter. Network: 4 blocks of two 3x3 convolutions (GroupNorm,
ReLU; width w, 2w, 4w, 4w channels), 2x2 average pooling after the first three, mean over
frequency, mean and max over time, dropout 0.3, a 256-unit hidden layer, one logit per instrument.
Training: AdamW (weight decay 1e-4), warm-up over 100 steps then cosine decay of `--lr`, binary
cross-entropy, batches of 64; each training snippet gets a random smooth EQ (+-`--eq-db` at 6
knots across the mel bands) and, with probability `--mix`, another random training snippet added
in the power domain at -6..0 dB with the labels or-ed (`mix_in_power`), so the network sees
instrument combinations the tracks do not hold. One decision threshold shared by all instruments
is tuned on validation for micro F1 by `tagging.model.micro_thresholds` (as `mt3x-tag train
--thresholds micro`).

Prints (and writes with `--out`, JSON) micro F1 / micro ROC AUC / macro F1 of the CNN (row
'tagger'), the constant prior and the majority class per domain, the AUC with probabilities
averaged over each track, per-instrument ROC AUC, and the wall time. Not a product path:
`mt3x-tag` stays LightGBM.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn import metrics as skm
from tqdm import tqdm

from mt3x.audio.mel import mel_filterbank_slaney
from mt3x.audio.spectrum import stft
from mt3x.data.slakh import read_split
from mt3x.errors import Mt3xError
from mt3x.util.files import atomic_path
from tagging.examples import InstrumentGrouping, LabelConfig, labelled_snippets, track_groups
from tagging.features import FeatureConfig
from tagging.model import micro_thresholds
from tagging.scoring import format_domains_table, prior_decisions, score_decisions

N_FFT, HOP, N_MELS = 1024, 256, 64
_MEL = mel_filterbank_slaney(N_MELS, N_FFT // 2 + 1, 16000, 30.0, 8000.0)


@jax.jit
def mel_power(snippets: jax.Array) -> jax.Array:
    """f32[b, 16000] snippets at 16 kHz -> f32[b, 63, 64] mel-band powers."""
    spec = stft(snippets, n_fft=N_FFT, hop_length=HOP, window="hann", center=True)
    return (jnp.abs(spec) ** 2) @ jnp.asarray(_MEL, jnp.float32)


def normalise_log_mel(power: jax.Array) -> jax.Array:
    """f32[b, frames, bands] powers -> log powers referenced to each snippet's maximum, floored
    18 nepers (78 dB) below it and scaled to [-2, 1]: invariant to the snippet's gain while its
    powers stay well above the 1e-7 offset (a full-scale sine's band power is about 6.5e4)."""
    x = jnp.log(power + 1e-7)
    x = x - jnp.max(x, axis=(1, 2), keepdims=True)
    return jnp.maximum(x, -18.0) / 6.0 + 1.0


def mix_in_power(power: np.ndarray, labels: np.ndarray, other_power: np.ndarray,
                 other_labels: np.ndarray, gain: np.ndarray, chosen: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Adds `other` snippets (f32[b, frames, bands] powers, bool/float[b, instruments] labels)
    at power gains f32[b] to the rows where `chosen` (bool[b]) holds; labels are or-ed there."""
    power, labels = power.copy(), labels.copy()
    power[chosen] = power[chosen] + gain[chosen, None, None] * other_power[chosen]
    labels[chosen] = np.maximum(labels[chosen], other_labels[chosen])
    return power, labels


class SnippetCNN(nn.Module):
    """f32[b, frames, bands] normalised log-mels -> f32[b, num_outputs] logits."""

    width: int
    num_outputs: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = x[..., None]
        widths = [self.width, self.width * 2, self.width * 4, self.width * 4]
        for i, channels in enumerate(widths):
            for _ in range(2):
                x = nn.relu(nn.GroupNorm(num_groups=8)(nn.Conv(channels, (3, 3))(x)))
            if i < len(widths) - 1:
                x = nn.avg_pool(x, (2, 2), (2, 2))
        x = x.mean(axis=2)
        x = jnp.concatenate([x.mean(1), x.max(1)], -1)
        x = nn.Dropout(0.3, deterministic=not train)(x)
        x = nn.relu(nn.Dense(256)(x))
        return nn.Dense(self.num_outputs)(x)


def load_split(root: str, split: str, instruments: list[str] | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(f32[n, 63, 64] mel powers, f32[n, instruments] energy labels, str[n] track ids,
    instruments) of every snippet of root/split."""
    tracks = read_split(root, split)
    grouping = InstrumentGrouping()
    instruments = track_groups(tracks, grouping) if instruments is None else instruments
    mels, labels, ids = [], [], []
    for track in tracks:
        snippets, examples, _ = labelled_snippets(track, instruments, grouping, LabelConfig(),
                                                  FeatureConfig(), "half")
        mels.append(np.asarray(mel_power(jnp.asarray(snippets))))
        labels.append(examples.energy_labels)
        ids.append(examples.track_ids)
    return (np.concatenate(mels).astype(np.float32), np.concatenate(labels).astype(np.float32),
            np.concatenate(ids), instruments)


def ood_domain_names(roots: list[str]) -> dict[str, str]:
    """{domain name: folder} of the out-of-domain folders: 'out-of-domain' for the first, then
    'out-of-domain (<folder name>)'."""
    return {("out-of-domain" if i == 0 else f"out-of-domain ({Path(root).name})"): root
            for i, root in enumerate(roots)}


def track_average(proba: np.ndarray, track_ids: np.ndarray) -> np.ndarray:
    """f32[n, instruments]: each snippet's probabilities replaced by its track's mean."""
    out = np.empty_like(proba)
    for track in np.unique(track_ids):
        rows = track_ids == track
        out[rows] = proba[rows].mean(0)
    return out


def run(args: argparse.Namespace) -> dict:
    start = time.time()
    x_train, y_train, _, instruments = load_split(args.data, "train", None)
    x_val, y_val, _, _ = load_split(args.data, "validation", instruments)
    domains = {"in-domain": load_split(args.data, args.split, instruments)}
    for name, root in ood_domain_names(args.ood_data or []).items():
        domains[name] = load_split(root, args.ood_split, instruments)
    net = SnippetCNN(args.width, len(instruments))
    rng = np.random.default_rng(args.seed)
    params = net.init(jax.random.PRNGKey(args.seed), normalise_log_mel(jnp.asarray(x_train[:2])),
                      False)
    steps_per_epoch = len(x_train) // args.batch
    total = max(args.epochs * steps_per_epoch, 2)
    schedule = optax.warmup_cosine_decay_schedule(0, args.lr, min(100, total // 2), total)
    optimizer = optax.adamw(schedule, weight_decay=1e-4)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, x, y, key):
        def loss_fn(p):
            logits = net.apply(p, normalise_log_mel(x), True, rngs={"dropout": key})
            return optax.sigmoid_binary_cross_entropy(logits, y).mean()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def forward(params, x):
        return jax.nn.sigmoid(net.apply(params, normalise_log_mel(x), False))

    def predict(x: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(forward(params, jnp.asarray(x[i:i + 256])))
                               for i in range(0, len(x), 256)])

    knots = np.arange(6)
    bands = np.linspace(0, 5, x_train.shape[2])
    key = jax.random.PRNGKey(args.seed)
    bar = tqdm(total=args.epochs * steps_per_epoch, desc="cnn tagger", unit="step",
               disable=args.no_progress)
    for _ in range(args.epochs):
        order = rng.permutation(len(x_train))
        for i in range(steps_per_epoch):
            rows = order[i * args.batch:(i + 1) * args.batch]
            x, y = x_train[rows], y_train[rows]
            if args.eq_db > 0:
                curves = np.stack([np.interp(bands, knots, k)
                                   for k in rng.uniform(-args.eq_db, args.eq_db, (len(rows), 6))])
                x = x * (10 ** (curves / 10))[:, None, :]
            chosen = rng.random(len(rows)) < args.mix
            other = rng.integers(0, len(x_train), len(rows))
            gain = 10 ** (rng.uniform(-6, 0, len(rows)) / 10)
            x, y = mix_in_power(x, y, x_train[other], y_train[other], gain, chosen)
            key, sub = jax.random.split(key)
            params, opt_state, loss = step(params, opt_state, jnp.asarray(x, jnp.float32),
                                           jnp.asarray(y), sub)
            bar.update()
            bar.set_postfix(loss=f"{float(loss):.4f}")
    bar.close()
    threshold = float(micro_thresholds(y_val > 0, predict(x_val))[0])
    prior = y_train.mean(0).astype(np.float64)
    result = {"instruments": instruments, "threshold": threshold, "train_snippets": len(x_train),
              "domains": {}}
    tables = {}
    for name, (x, y, ids, _) in domains.items():
        proba, labels = predict(x), y > 0
        tracks = len(set(ids.tolist()))
        rows = {"tagger": score_decisions(labels, proba >= threshold, proba, tracks=tracks),
                "constant prior": score_decisions(
                    labels, np.broadcast_to(prior_decisions(prior), labels.shape), prior,
                    tracks=tracks),
                "majority class": score_decisions(
                    labels, np.broadcast_to(prior > 0.5, labels.shape),
                    np.broadcast_to(prior > 0.5, labels.shape).astype(np.float64),
                    tracks=tracks)}
        tables[name] = rows
        per_instrument = {inst: float(skm.roc_auc_score(labels[:, j], proba[:, j]))
                          for j, inst in enumerate(instruments) if 0 < labels[:, j].sum() < len(y)}
        result["domains"][name] = {
            "scores": {method: vars(s) for method, s in rows.items()},
            "track_average_auc": float(skm.roc_auc_score(labels.ravel(),
                                                         track_average(proba, ids).ravel())),
            "per_instrument_auc": per_instrument}
    result["seconds"] = round(time.time() - start, 1)
    result["table"] = format_domains_table(tables)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="Slakh2100-layout folder (16 kHz audio)")
    parser.add_argument("--split", default="test", help="in-domain split scored (default test)")
    parser.add_argument("--ood-data", action="append",
                        help="out-of-domain Slakh2100-layout folder (repeat for more)")
    parser.add_argument("--ood-split", default="test")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--width", type=int, default=16, help="channels of the first block")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--mix", type=float, default=0.5,
                        help="share of training snippets with another snippet added")
    parser.add_argument("--eq-db", type=float, default=6.0, help="random EQ range (dB)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the result as JSON here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = run(args)
    except Mt3xError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result["table"])
    for name, domain in result["domains"].items():
        print(f"{name}: AUC of track-averaged probabilities {domain['track_average_auc']:.3f}")
        print("  per-instrument AUC: " + ", ".join(
            f"{k} {v:.2f}" for k, v in domain["per_instrument_auc"].items()))
    print(f"threshold {result['threshold']:.2f}; {result['train_snippets']} training snippets; "
          f"{result['seconds']:.0f} s")
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(result, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
