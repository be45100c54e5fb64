"""Feature importance (LightGBM gain) grouped by frequency band.

Each booster's gain importances are normalised to sum to one, so every instrument counts equally;
a band's share is the sum of its features (mean / std / max dB); the snippet-wide features are
grouped by kind (centroid, ber, flatness, level). `region_summary` answers the question "are the
low frequencies the most telling?" by comparing regions' gain per band: a region matters more than
its size when its share of the band gain exceeds its share of the bands.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tagging.features import band_centres_hz, band_of_feature

__all__ = ["BandImportance", "band_importance", "region_summary", "DEFAULT_REGIONS_HZ"]

# Region edges (Hz) for the summary: low < 250 Hz <= mid < 2000 Hz <= high.
DEFAULT_REGIONS_HZ = (250.0, 2000.0)


@dataclasses.dataclass
class BandImportance:
    """Gain shares.

    Attributes:
      instruments: row names.
      band_centres_hz: f64[bands].
      band_share: f64[instruments, bands], each booster's normalised gain summed per band.
      other_names: names of the snippet-wide feature groups.
      other_share: f64[instruments, len(other_names)].
    """

    instruments: list[str]
    band_centres_hz: np.ndarray
    band_share: np.ndarray
    other_names: list[str]
    other_share: np.ndarray

    def mean_band_share(self) -> np.ndarray:
        """f64[bands]: mean over instruments."""
        return self.band_share.mean(axis=0)

    def mean_other_share(self) -> np.ndarray:
        return self.other_share.mean(axis=0)


def band_importance(tagger) -> BandImportance:
    """Gain importances of every booster of `tagger` (a `tagging.model.Tagger`)."""
    centres = band_centres_hz(tagger.feature_config)
    groups = []
    other_names: list[str] = []
    for name in tagger.feature_names:
        band = band_of_feature(name)
        if band is not None:
            groups.append(("band", band[0]))
        else:
            kind = name.split("_")[0]
            if kind not in other_names:
                other_names.append(kind)
            groups.append(("other", other_names.index(kind)))
    band_share = np.zeros((len(tagger.instruments), centres.size))
    other_share = np.zeros((len(tagger.instruments), len(other_names)))
    for row, instrument in enumerate(tagger.instruments):
        gain = np.asarray(tagger.boosters[instrument].feature_importance("gain"), np.float64)
        total = gain.sum()
        if total <= 0:
            continue
        gain = gain / total
        for (kind, index), value in zip(groups, gain):
            (band_share if kind == "band" else other_share)[row, index] += value
    return BandImportance(list(tagger.instruments), centres, band_share, other_names, other_share)


def region_summary(importance: BandImportance,
                   edges_hz: tuple[float, ...] = DEFAULT_REGIONS_HZ) -> list[dict]:
    """Per frequency region: bands, share of bands, share of band gain, and their ratio.

    Returns rows {region, bands, band_fraction, gain_fraction, gain_per_band_ratio}; ratio > 1
    means the region is more telling than its number of bands suggests."""
    shares = importance.mean_band_share()
    total = shares.sum()
    bounds = [0.0, *edges_hz, np.inf]
    rows = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        mask = (importance.band_centres_hz >= lo) & (importance.band_centres_hz < hi)
        label = (f"< {hi:.0f} Hz" if lo == 0 else f">= {lo:.0f} Hz" if np.isinf(hi)
                 else f"{lo:.0f}-{hi:.0f} Hz")
        band_fraction = mask.mean()
        gain_fraction = shares[mask].sum() / total if total > 0 else np.nan
        rows.append({"region": label, "bands": int(mask.sum()),
                     "band_fraction": float(band_fraction),
                     "gain_fraction": float(gain_fraction),
                     "gain_per_band_ratio": float(gain_fraction / band_fraction)
                     if band_fraction > 0 else np.nan})
    return rows
