"""Shared by the thin entry points in launch/: flags, multi-process start-up, gin parsing.

Flags understood by every entry point:
  --gin_file FILE           (repeatable) gin files, as paths or relative to configs/
  --gin.NAME=VALUE          (repeatable) one binding, e.g. --gin.TRAIN_STEPS=600 or
                            --gin.mt3x.runs.DataConfig.batch_size=16; VALUE is gin syntax, but
                            text that is not a number, True/False/None, a quoted string, a
                            tuple/list/dict, @ref or %MACRO is taken as a string, so
                            --gin.INSTRUMENTS=piano,guitar needs no inner quotes
  --gin_bindings 'A = B'    (repeatable) a binding in gin syntax
  --workdir DIR             binds the macro MODEL_DIR (train) / EVAL_OUTPUT_DIR (eval)
  --coordinator_address HOST:PORT, --num_processes N, --process_id I
                            start jax.distributed (also read from JAX_COORDINATOR_ADDRESS,
                            JAX_NUM_PROCESSES, JAX_PROCESS_ID); --cpu_collectives gloo for CPUs
"""

from __future__ import annotations

from mt3x.util.quiet import cli_args, quiet_startup

quiet_startup()  # first: TensorFlow, pydub and Orbax stay quiet only if set before they load

import argparse
import ast
import logging
import os
import sys
from typing import Any, Callable, Sequence

from mt3x.util.compilation_cache import enable_compilation_cache


def build_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--gin_file", action="append", default=[],
                        help="gin file (path or relative to configs/); repeatable")
    parser.add_argument("--gin_bindings", action="append", default=[],
                        help="a gin binding such as \"TRAIN_STEPS = 100\"; repeatable")
    parser.add_argument("--workdir", default=None, help="run / output directory")
    parser.add_argument("--coordinator_address", default=os.environ.get("JAX_COORDINATOR_ADDRESS"))
    parser.add_argument("--num_processes", type=int,
                        default=int(os.environ.get("JAX_NUM_PROCESSES", "1")))
    parser.add_argument("--process_id", type=int,
                        default=int(os.environ.get("JAX_PROCESS_ID", "0")))
    parser.add_argument("--cpu_collectives", default=None, choices=[None, "gloo", "mpi"],
                        help="collectives implementation for multi-process CPU runs")
    parser.add_argument("--print_config", action="store_true",
                        help="print the parsed gin config and exit")
    return parser


def parse_flags(parser: argparse.ArgumentParser,
                argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Parses known flags; every `--gin.NAME=VALUE` (or `--gin.NAME VALUE`) becomes a binding."""
    argv = cli_args(argv)
    rest, gin_dotted = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--gin.") and arg != "--gin.":
            name, eq, value = arg[len("--gin."):].partition("=")
            if not eq:
                if i + 1 >= len(argv):
                    parser.error(f"{arg}: missing value")
                value, i = argv[i + 1], i + 1
            gin_dotted.append(f"{name} = {gin_value(value)}")
        else:
            rest.append(arg)
        i += 1
    args = parser.parse_args(rest)
    return args, list(args.gin_bindings) + gin_dotted


def init_distributed(args: argparse.Namespace) -> None:
    """Starts jax.distributed when several processes are requested (flags or env vars)."""
    import jax

    if args.cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", args.cpu_collectives)
    if args.num_processes > 1 or args.coordinator_address:
        jax.distributed.initialize(coordinator_address=args.coordinator_address,
                                   num_processes=args.num_processes,
                                   process_id=args.process_id)


def parse_gin_config(gin_files: Sequence[str], bindings: Sequence[str]) -> str:
    """Parses and finalizes the config (a `%gin.REQUIRED` macro left unbound is an error);
    returns the config text. Raises GinConfigError."""
    import gin

    from mt3x.runs.gin_utils import GinConfigError, parse_gin

    if not gin_files:
        raise GinConfigError("no --gin_file given; e.g. --gin_file=experiments/demo_cpu.gin")
    quiet = _DropGinPathProbes()
    logging.getLogger().addFilter(quiet)  # gin logs each include path it probes before the hit
    try:
        text = parse_gin(gin_files, bindings)
    finally:
        logging.getLogger().removeFilter(quiet)
    try:
        gin.finalize()
    except ValueError as err:
        raise GinConfigError(
            f"invalid gin configuration: {err} (bind it with --gin.NAME=VALUE)") from err
    return text


class _DropGinPathProbes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Path not found")


def bound_macro(name: str | None) -> str | None:
    """The value of gin macro `name` in the parsed config, or None (unbound or no name)."""
    import gin

    if not name:
        return None
    try:
        value = gin.query_parameter(f"%{name}")
    except ValueError:
        return None
    return str(value) if value else None


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger().setLevel(logging.INFO)  # absl may have installed the root handler
    for noisy in ("absl", "jax._src", "orbax", "tensorflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def exit_process(code: int) -> None:
    """Ends an entry point's process with `code`. After an error, output is flushed and the
    process ends at once (`os._exit`): a data pipeline's threads (a tf.data iterator being
    destroyed during garbage collection) must not hold a refused run open for minutes."""
    sys.stdout.flush()
    sys.stderr.flush()
    if code:
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


def gin_value(value: str) -> str:
    """VALUE of `--gin.NAME=VALUE` as gin text: gin syntax as given when it starts like a gin
    value (quote, bracket, @ or %) or is a Python literal (3, 1e-3, True, None); otherwise the
    text as a string ('piano,guitar', 'piano=0-7;drums', 'data/demo')."""
    text = value.strip()
    if not text or text[0] in "'\"([{@%":
        return value
    try:
        ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return quote(text)
    return value


def quote(value: str) -> str:
    """A Python string as a gin string literal."""
    return repr(str(value))


def run_gin_entry(description: str, argv: Sequence[str] | None, *, workdir_macro: str,
                  job: "Callable[[str], Any]", cache_macro: str | None = None
                  ) -> tuple[int, Any]:
    """The shared body of a gin entry point: flags -> distributed start-up -> gin -> `job`.

    Args:
      description: the parser's description.
      argv: command-line arguments (None: sys.argv[1:]).
      workdir_macro: the gin macro that `--workdir` binds (MODEL_DIR, EVAL_OUTPUT_DIR, ...).
      job: called with the operative gin config text; returns what the entry point prints.
      cache_macro: the gin macro (e.g. MODEL_DIR) whose directory holds the persistent
        compilation cache (`<dir>/jax_cache`, so a relaunch or resume compiles from it);
        None or unbound: the user cache dir. MT3X_COMPILATION_CACHE overrides or turns it off.
    Returns:
      (exit code, job result or None). A user error (Mt3xError) prints `error: ...` and gives 2;
      `--print_config` prints the config and gives 0 without running the job.
    """
    parser = build_parser(description)
    args, bindings = parse_flags(parser, argv)
    from mt3x.errors import Mt3xError

    try:
        init_distributed(args)
        if args.workdir:
            bindings.append(f"{workdir_macro} = {quote(args.workdir)}")
        config = parse_gin_config(args.gin_file, bindings)
        if args.print_config:
            print(config)
            return 0, None
        setup_logging()
        enable_compilation_cache(bound_macro(cache_macro))
        return 0, job(config)
    except Mt3xError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2, None
