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

What each output is made of: per track the energy shares of every true source, of the residual
('other') and of artifacts in every output (`metrics.output_composition`); `compositions`
averages them over the tracks where the output's group sounds (where it is scored), next to the
same shares of the mixture, so a row tells which sources a separator fails to take out.

Outputs: `write_table(rows, out_dir)` writes `separation_scores.md`, `separation_scores.csv` and
`separation_scores_tracks.csv` (per track) atomically; `write_bar_chart` a PNG of SI-SDR;
`write_compositions` `separation_composition.md` / `.csv` and a heat map per chosen method
(`separation.plots.composition_figure`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from mt3x.util.files import atomic_path
from separation import metrics, oracles, plots
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
    composition: tuple[float | None, ...] = ()  # shares: each source, 'other', artifacts


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
            shares = metrics.output_composition(sources, est, mixture)
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
                                         bss[j].sir, bss[j].sar,
                                         tuple(metrics.as_optional(shares[j]))))
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
        [(s.method, s.track_id, s.instrument, s.si_sdr, s.si_sdri, s.sdr, s.sir, s.sar)
         for s in scores])
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


@dataclasses.dataclass(frozen=True)
class Composition:
    """Mean energy shares (columns: each source, 'other', 'artifacts') of each output (rows),
    over the `tracks[j]` tracks where output j's group sounds (NaN row if none)."""
    method: str
    outputs: tuple[str, ...]
    parts: tuple[str, ...]
    shares: np.ndarray  # float64[n_out, n_out + 2]
    tracks: np.ndarray  # int[n_out]


def compositions(scores: Sequence[TrackScore]) -> dict[str, Composition]:
    """Per method, the mean of `TrackScore.composition` over the tracks where the output is
    scored (SI-SDR defined), in first-seen order."""
    out: dict[str, Composition] = {}
    for method in dict.fromkeys(s.method for s in scores):
        sel = [s for s in scores if s.method == method and s.composition]
        if not sel:
            continue
        outputs = tuple(dict.fromkeys(s.instrument for s in sel))
        shares = np.full((len(outputs), len(outputs) + 2), np.nan)
        tracks = np.zeros(len(outputs), int)
        for j, name in enumerate(outputs):
            rows = [s.composition for s in sel if s.instrument == name and s.si_sdr is not None
                    and None not in s.composition]
            tracks[j] = len(rows)
            if rows:
                shares[j] = np.mean(np.array(rows, np.float64), axis=0)
        out[method] = Composition(method, outputs, outputs + ("other", "artifacts"), shares, tracks)
    return out


def composition_markdown(composition: Composition) -> str:
    """Rows: outputs (with the tracks each mean rests on); columns: energy shares."""
    lines = [f"{composition.method}: mean share of each output's energy (rows) from each source "
             "(columns)",
             "",
             "| output | tracks | " + " | ".join(composition.parts) + " |",
             "|---|---:|" + "---:|" * len(composition.parts)]
    for j, name in enumerate(composition.outputs):
        cells = ["n/a" if not np.isfinite(v) else f"{v:.2f}" for v in composition.shares[j]]
        lines.append(f"| {name} | {composition.tracks[j]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_compositions(scores: Sequence[TrackScore], out_dir: str | os.PathLike, *,
                       pictures: Sequence[str] = ()) -> dict[str, Path]:
    """Writes `separation_composition.md` / `.csv` (every method) and a heat map
    `separation_composition_<method>.png` for each method in `pictures` (with the mixture's
    shares beside it), atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    matrices = compositions(scores)
    records = [(c.method, out, int(c.tracks[j]), part, None if not np.isfinite(c.shares[j, k])
                else float(c.shares[j, k]))
               for c in matrices.values() for j, out in enumerate(c.outputs)
               for k, part in enumerate(c.parts)]
    paths = {"composition": out_dir / "separation_composition.md",
             "composition_csv": out_dir / "separation_composition.csv"}
    with atomic_path(paths["composition"]) as tmp:
        tmp.write_text("\n".join(composition_markdown(c) for c in matrices.values()))
    with atomic_path(paths["composition_csv"]) as tmp:
        tmp.write_text(_csv_text(["method", "output", "tracks", "part", "share"], records))
    for method in pictures:
        if method in matrices:
            paths[f"composition_png {method}"] = plots.composition_figure(
                out_dir / f"separation_composition_{file_label(method)}.png",
                [matrices[m] for m in ("mixture", method) if m in matrices])
    return paths


def file_label(method: str) -> str:
    """A method's row label as a file or folder name ('DNN, LS init' -> 'DNN_LS_init')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", method).strip("_")

