"""Evaluation over a dataset split: one table, every row computed by the same code.

Rows ("methods") are estimators `(mixture float32[samples], sources float32[n_inst, samples]) ->
estimates float32[n_inst, samples]`; oracles see the true sources, models ignore them. For every
(method, instrument) the table holds the median over tracks of SI-SDR and SI-SDRi (own numpy
SI-SDR), BSSEval v4 SDR / SIR / SAR (museval, median over 1 s windows, then over tracks), the
number of tracks each median rests on (`tracks`) and the number of tracks where the instrument
group is absent (no stem of it sounds, so its scores are undefined: counted in `absent`, never
NaN).

`domains_markdown` puts the tables of several datasets side by side ('in-domain',
'out-of-domain'): per (method, instrument) the median SI-SDR and SI-SDRi of each, with the
tracks it rests on and the absent count.

Outputs: `write_table(rows, out_dir)` writes `separation_scores.md`, `separation_scores.csv` and
`separation_scores_tracks.csv` (per track) atomically; `write_bar_chart` a PNG of SI-SDR.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from mt3x.util.files import atomic_path
from separation import metrics, oracles
from separation.spectral import StftConfig

Estimator = Callable[[np.ndarray, np.ndarray], np.ndarray]


def oracle_estimators(stft_config: StftConfig) -> dict[str, Estimator]:
    """The framing rows: mixture as estimate, IBM and IRM at `stft_config`."""
    return {
        "mixture": lambda mix, src: oracles.oracle_estimates(mix, src, "mixture", stft_config),
        "IBM": lambda mix, src: oracles.oracle_estimates(mix, src, "ibm", stft_config),
        "IRM": lambda mix, src: oracles.oracle_estimates(mix, src, "irm", stft_config),
    }


@dataclasses.dataclass(frozen=True)
class TrackScore:
    method: str
    track_id: str
    instrument: str
    si_sdr: float | None
    si_sdri: float | None
    sdr: float | None
    sir: float | None
    sar: float | None


@dataclasses.dataclass(frozen=True)
class TableRow:
    method: str
    instrument: str
    si_sdr: metrics.Summary
    si_sdri: metrics.Summary
    sdr: metrics.Summary
    sir: metrics.Summary
    sar: metrics.Summary


def score_tracks(estimators: Mapping[str, Estimator],
                 examples: Iterable[tuple[str, np.ndarray, np.ndarray]],
                 instruments: Sequence[str], sample_rate: int, *, bss_eval: bool = True
                 ) -> list[TrackScore]:
    """Per-track scores of every estimator.

    Args:
      estimators: method name -> estimator.
      examples: (track_id, mixture float32[samples], sources float32[n_inst, samples]), e.g.
        `separation.data.evaluation_examples(...)`.
      instruments: names of the n_inst sources.
      sample_rate: Hz (BSSEval window = 1 s).
      bss_eval: also compute BSSEval v4 (slow on long tracks: ~seconds per track and method).
    """
    scores: list[TrackScore] = []
    for track_id, mixture, sources in examples:
        for method, estimate_fn in estimators.items():
            est = np.asarray(estimate_fn(mixture, sources), np.float32)
            if est.shape != sources.shape:
                raise ValueError(f"{method}: estimates {est.shape} != sources {sources.shape}")
            si = metrics.as_optional(metrics.si_sdr(sources, est))
            sii = metrics.as_optional(metrics.si_sdr_improvement(sources, est, mixture))
            if bss_eval:
                # references = targets + residual, so SIR counts leakage from the rest of the mix
                residual = mixture - sources.sum(0)
                refs = np.concatenate([sources, residual[None]])
                ests = np.concatenate([est, (mixture - est.sum(0))[None]])
                bss = metrics.bss_eval_v4(refs, ests, sample_rate)[:len(instruments)]
            else:
                bss = [metrics.BssEvalScores(None, None, None, None, 0, 0)] * len(instruments)
            for j, name in enumerate(instruments):
                scores.append(TrackScore(method, track_id, name, si[j], sii[j], bss[j].sdr,
                                         bss[j].sir, bss[j].sar))
    return scores


def summarize_scores(scores: Sequence[TrackScore]) -> list[TableRow]:
    """Median over tracks per (method, instrument), in first-seen order."""
    keys = list(dict.fromkeys((s.method, s.instrument) for s in scores))
    rows = []
    for method, inst in keys:
        sel = [s for s in scores if s.method == method and s.instrument == inst]
        rows.append(TableRow(method, inst, *(metrics.summarize(getattr(s, f) for s in sel)
                                              for f in ("si_sdr", "si_sdri", "sdr", "sir", "sar"))))
    return rows


def markdown_table(rows: Sequence[TableRow]) -> str:
    """A markdown table: one line per (method, instrument), medians in dB."""
    lines = ["| method | instrument | SI-SDR | SI-SDRi | SDR (v4) | SIR | SAR | tracks | absent |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        f = lambda s: "n/a" if s.median is None else f"{s.median:.2f}"
        lines.append(f"| {r.method} | {r.instrument} | {f(r.si_sdr)} | {f(r.si_sdri)} | "
                     f"{f(r.sdr)} | {f(r.sir)} | {f(r.sar)} | {r.si_sdr.n_defined} | "
                     f"{r.si_sdr.n_undefined} |")
    return "\n".join(lines) + "\n"


def domains_markdown(by_domain: Mapping[str, Sequence[TableRow]]) -> str:
    """One markdown table of several datasets side by side: per (method, instrument), for each
    domain, median SI-SDR and SI-SDRi (dB), the tracks the medians rest on and the tracks where
    the group is absent. Rows in first-seen order over the domains; '-' where a domain lacks a
    row (e.g. an oracle at an STFT only one domain was scored with)."""
    domains = list(by_domain)
    index = {d: {(r.method, r.instrument): r for r in rows} for d, rows in by_domain.items()}
    keys = list(dict.fromkeys(k for d in domains for k in index[d]))
    head = "| method | instrument | " + " | ".join(
        f"{d} SI-SDR | {d} SI-SDRi | {d} tracks | {d} absent" for d in domains) + " |"
    lines = [head, "|---|---|" + "---:|" * (4 * len(domains))]
    f = lambda s: "n/a" if s.median is None else f"{s.median:.2f}"
    for key in keys:
        cells = []
        for d in domains:
            r = index[d].get(key)
            cells += (["-"] * 4 if r is None else
                      [f(r.si_sdr), f(r.si_sdri), str(r.si_sdr.n_defined),
                       str(r.si_sdr.n_undefined)])
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _csv_text(header: Sequence[str], records: Iterable[Sequence]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for rec in records:
        writer.writerow(["" if v is None else (f"{v:.4f}" if isinstance(v, float) else v)
                         for v in rec])
    return buf.getvalue()


def write_table(rows: Sequence[TableRow], scores: Sequence[TrackScore],
                out_dir: str | os.PathLike) -> dict[str, Path]:
    """Writes the markdown table and the summary / per-track CSVs (empty cells = undefined)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_csv = _csv_text(
        ["method", "instrument", "si_sdr", "si_sdri", "sdr", "sir", "sar", "si_sdr_mean",
         "tracks_defined", "tracks_absent"],
        [(r.method, r.instrument, r.si_sdr.median, r.si_sdri.median, r.sdr.median, r.sir.median,
          r.sar.median, r.si_sdr.mean, r.si_sdr.n_defined, r.si_sdr.n_undefined) for r in rows])
    tracks_csv = _csv_text(
        ["method", "track_id", "instrument", "si_sdr", "si_sdri", "sdr", "sir", "sar"],
        [dataclasses.astuple(s) for s in scores])
    paths = {"markdown": out_dir / "separation_scores.md", "csv": out_dir / "separation_scores.csv",
             "tracks_csv": out_dir / "separation_scores_tracks.csv"}
    for key, text in (("markdown", markdown_table(rows)), ("csv", summary_csv),
                      ("tracks_csv", tracks_csv)):
        with atomic_path(paths[key]) as tmp:
            tmp.write_text(text)
    return paths


def write_bar_chart(rows: Sequence[TableRow], path: str | os.PathLike, *, field: str = "si_sdr"
                    ) -> Path:
    """Grouped bars: one group per instrument, one bar per method (median `field` in dB)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    methods = list(dict.fromkeys(r.method for r in rows))
    instruments = list(dict.fromkeys(r.instrument for r in rows))
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(instruments), 3.6))
    for k, method in enumerate(methods):
        vals = []
        for inst in instruments:
            row = next((r for r in rows if r.method == method and r.instrument == inst), None)
            med = getattr(row, field).median if row else None
            vals.append(np.nan if med is None else med)
        ax.bar(np.arange(len(instruments)) + k * width, vals, width, label=method)
    ax.set_xticks(np.arange(len(instruments)) + 0.4 - width / 2, instruments)
    ax.set_ylabel(f"median {field.replace('_', '-').upper()} (dB)")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)
    return path
