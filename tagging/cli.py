"""`mt3x-tag`: which instruments play in each second of a recording (LightGBM on spectral features).

  mt3x-tag AUDIO... --model DIR [--out DIR]
      Prints, per file, one row per started second with each instrument's probability and 0/1
      decision; writes <out>/<name>.tags.csv and <out>/<name>.timeline.png (default out: .), where
      <name> is the file's stem, or <folder>_<stem> when several inputs share a stem.
  mt3x-tag train --data ROOT --out DIR [--grouping inst_class] [--labels energy] ...
      Trains one model per instrument on ROOT/train (early stopping on ROOT/validation), scores
      ROOT/test; writes DIR/model/ (give DIR or DIR/model to --model), DIR/metrics.md,
      DIR/metrics.csv, DIR/importance.png, DIR/importance.csv, DIR/summary.json.
  mt3x-tag eval --data ROOT --model DIR [--split test] [--ood-data ROOT2] [--out DIR]
      Scores a trained tagger on ROOT/<split> (and ROOT2/<--ood-split>, default test) next to
      its baselines (a constant per-instrument training prior and the majority class): micro
      F1, micro ROC AUC and macro F1, in-domain and out-of-domain side by side; with --out,
      writes DIR/eval.json and DIR/eval.txt.
  mt3x-tag cluster --data ROOT [--split test] [--k 4] --out DIR
      k-means of the tracks by spectral statistics; writes DIR/clusters.csv and DIR/clusters.png.

Exit status 2 with `error: ...` on bad input (missing model directory, unreadable audio, a folder
not in Slakh2100 layout).
"""

from __future__ import annotations

from mt3x.util.quiet import cli_args, quiet_startup

quiet_startup()  # first: TensorFlow, pydub and Orbax stay quiet only if set before they load

import argparse
import json
import sys
from pathlib import Path

from mt3x.cli.arguments import add_ood_arguments
from mt3x.errors import Mt3xError
from mt3x.util.files import atomic_path, check_output_path
from tagging.examples import InstrumentGrouping, LabelConfig
from tagging.model import TrainConfig, load_tagger, metrics_markdown
from tagging.pipeline import (cluster_folder, load_split_examples, tag_file, train_on_folder,
                              write_cluster_outputs, write_tags_csv, write_training_outputs)
from tagging.plots import timeline_plot
from tagging.scoring import format_domains_table as format_scoring_table
from tagging.scoring import score_methods, scores_json

SUBCOMMANDS = ("train", "eval", "cluster")


def _tag_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mt3x-tag", description="Per-second instrument activity of audio files "
        "(subcommands: `mt3x-tag train ...`, `mt3x-tag eval ...`, `mt3x-tag cluster ...`).")
    parser.add_argument("audio", nargs="+", type=Path, help="audio files (wav, flac, ...)")
    parser.add_argument("--model", required=True, type=Path,
                        help="directory written by `mt3x-tag train` (or its model/ subfolder)")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="where to write <name>.tags.csv and <name>.timeline.png (default .)")
    parser.add_argument("--no-plot", action="store_true", help="skip the timeline PNG")
    return parser


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mt3x-tag train",
                                     description="Train per-instrument LightGBM taggers.")
    parser.add_argument("--data", required=True, type=Path,
                        help="folder in Slakh2100 layout with train/ validation/ test/")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--grouping", default="inst_class",
                        help="'inst_class' (default), '4stem' (with other=*), or instrument "
                        "groups as for mt3x-separate, e.g. 'piano,guitar,bass,drums,other=*' or "
                        "'keys=0-7|16-23;drums;other=*'")
    parser.add_argument("--labels", default="energy", choices=("energy", "midi", "both", "either"),
                        help="which activity rule trains and scores (default energy)")
    parser.add_argument("--threshold-db", type=float, default=-40.0,
                        help="energy rule: dB relative to the stem's loudest snippet")
    parser.add_argument("--min-note-ms", type=float, default=50.0,
                        help="MIDI rule: sounding time in a snippet (ms)")
    parser.add_argument("--threads", type=int, default=1, help="LightGBM threads")
    defaults = TrainConfig()
    parser.add_argument("--num-leaves", type=int, default=defaults.num_leaves,
                        help=f"LightGBM leaves per tree (default {defaults.num_leaves})")
    parser.add_argument("--min-data-in-leaf", type=int, default=defaults.min_data_in_leaf,
                        help="LightGBM minimum snippets per leaf (default "
                        f"{defaults.min_data_in_leaf}; ~100 regularises against memorising "
                        "training tracks)")
    parser.add_argument("--feature-fraction", type=float, default=defaults.feature_fraction,
                        help=f"LightGBM feature subsampling (default {defaults.feature_fraction})")
    parser.add_argument("--lambda-l2", type=float, default=defaults.lambda_l2,
                        help=f"LightGBM L2 leaf regularisation (default {defaults.lambda_l2})")
    parser.add_argument("--thresholds", default="instrument", choices=("instrument", "micro"),
                        help="decision thresholds tuned on validation for each instrument's F1 "
                        "(default) or jointly for the pooled micro F1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mt3x-tag eval",
                                     description="Score a tagger and its baselines, in domain "
                                     "and out of domain.")
    parser.add_argument("--data", required=True, type=Path,
                        help="in-domain folder in Slakh2100 layout")
    parser.add_argument("--model", required=True, type=Path,
                        help="directory written by `mt3x-tag train` (or its model/ subfolder)")
    parser.add_argument("--split", default="test", help="split of --data (default test)")
    add_ood_arguments(parser)
    parser.add_argument("--labels", default=None, choices=("energy", "midi", "both", "either"),
                        help="activity rule to score against (default: the model's)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write eval.json and eval.txt here")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _cluster_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mt3x-tag cluster",
                                     description="Cluster tracks by spectral statistics.")
    parser.add_argument("--data", required=True, type=Path, help="folder in Slakh2100 layout")
    parser.add_argument("--split", default="test")
    parser.add_argument("--k", type=int, default=4, help="number of clusters")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--quiet", action="store_true")
    return parser


def _format_table(result, name: str) -> str:
    width = max(6, *(len(n) for n in result.instruments))
    header = f"{'second':>7}  " + "  ".join(f"{n:>{width}}" for n in result.instruments)
    lines = [f"# {name}", header]
    for i, start in enumerate(result.start_seconds):
        cells = [f"{p:.2f} {'+' if d else '-'}".rjust(width)
                 for p, d in zip(result.probabilities[i], result.decisions[i])]
        lines.append(f"{start:>7g}  " + "  ".join(cells))
    return "\n".join(lines)


def output_names(paths: list[Path]) -> list[str]:
    """Unique output base names: the file stem, or <folder>_<stem> when stems repeat (e.g. many
    mix.flac files of different tracks), then a numeric suffix if still repeated."""
    stems = [p.stem for p in paths]
    names = [f"{p.parent.name}_{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if names.count(name) == 1 else f"{name}_{seen[name]}")
    return unique


def _run_tag(args: argparse.Namespace) -> int:
    check_output_path(args.out)
    tagger = load_tagger(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    seconds = tagger.feature_config.snippet_seconds
    for path, name in zip(args.audio, output_names(args.audio), strict=True):
        result = tag_file(tagger, path)
        print(_format_table(result, str(path)))
        csv_path = write_tags_csv(result, args.out / f"{name}.tags.csv", snippet_seconds=seconds)
        print(f"wrote {csv_path}")
        if not args.no_plot:
            png = timeline_plot(result.probabilities, result.decisions, result.instruments,
                                args.out / f"{name}.timeline.png", snippet_seconds=seconds,
                                title=f"{path}: instrument activity")
            print(f"wrote {png}")
    return 0


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The LightGBM settings of `mt3x-tag train`'s flags (the rest at TrainConfig defaults)."""
    return TrainConfig(num_threads=args.threads, seed=args.seed, num_leaves=args.num_leaves,
                       min_data_in_leaf=args.min_data_in_leaf,
                       feature_fraction=args.feature_fraction, lambda_l2=args.lambda_l2,
                       threshold_objective=args.thresholds)


def _run_train(args: argparse.Namespace) -> int:
    if not args.data.is_dir():
        raise Mt3xError(f"{args.data}: data folder not found")
    check_output_path(args.out)
    grouping = InstrumentGrouping.parse(args.grouping)
    labels = LabelConfig(threshold_db=args.threshold_db, min_note_ms=args.min_note_ms,
                         source=args.labels)
    result = train_on_folder(args.data, grouping=grouping, label_config=labels,
                             train_config=train_config_from_args(args),
                             progress=not args.quiet)
    paths = write_training_outputs(result, args.out)
    print(f"snippets: {result.split_sizes}")
    print(metrics_markdown(result.rows))
    for name, reason in result.tagger.skipped.items():
        print(f"skipped {name}: {reason}")
    for region in result.regions:
        print(f"{region['region']:>14}: {region['bands']:2d} bands, "
              f"{region['gain_fraction']:.0%} of band gain "
              f"(x{region['gain_per_band_ratio']:.2f} its share of bands)")
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    datasets = [("in-domain", args.data, args.split)]
    if args.ood_data is not None:
        datasets.append(("out-of-domain", args.ood_data, args.ood_split))
    for _, root, _ in datasets:
        if not root.is_dir():
            raise Mt3xError(f"{root}: data folder not found")
    tagger = load_tagger(args.model)
    by_domain = {}
    for domain, root, split in datasets:
        examples = load_split_examples(
            root, split, instruments=tagger.instruments, grouping=tagger.grouping,
            label_config=tagger.label_config, feature_config=tagger.feature_config,
            progress=not args.quiet)
        by_domain[domain] = score_methods(tagger, examples, label_source=args.labels)
    table = format_scoring_table(by_domain)
    print(f"model {args.model}; instruments scored: {', '.join(tagger.instruments)}")
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        report = {"model": str(args.model), "instruments": tagger.instruments,
                  "datasets": {d: {"root": str(r), "split": s} for d, r, s in datasets},
                  "scores": scores_json(by_domain)}
        for name, text in (("eval.json", json.dumps(report, indent=1)), ("eval.txt", table)):
            with atomic_path(args.out / name) as tmp:
                tmp.write_text(text + "\n")
        print(f"wrote {args.out / 'eval.json'}")
    return 0


def _run_cluster(args: argparse.Namespace) -> int:
    if not args.data.is_dir():
        raise Mt3xError(f"{args.data}: data folder not found")
    clusters, classes = cluster_folder(args.data, args.split, k=args.k, seed=args.seed,
                                       progress=not args.quiet)
    paths = write_cluster_outputs(clusters, classes, args.out)
    for label in range(args.k):
        members = [t for t, c in zip(clusters.track_ids, clusters.labels) if c == label]
        print(f"cluster {label}: {len(members)} tracks: {' '.join(members[:12])}"
              f"{' ...' if len(members) > 12 else ''}")
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = cli_args(argv)
    try:
        if argv and argv[0] == "train":
            return _run_train(_train_parser().parse_args(argv[1:]))
        if argv and argv[0] == "eval":
            return _run_eval(_eval_parser().parse_args(argv[1:]))
        if argv and argv[0] == "cluster":
            return _run_cluster(_cluster_parser().parse_args(argv[1:]))
        return _run_tag(_tag_parser().parse_args(argv))
    except Mt3xError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
