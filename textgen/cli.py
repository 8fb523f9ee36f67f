"""Command-line interface: parse options, resolve config, call one library function, report.

TensorFlow is imported only inside ``train`` (via textgen.trainer), so ``textgen --help`` and
``textgen sample`` start instantly. A ``TextgenError`` becomes one line on stderr and a non-zero
exit; ``--traceback`` shows the full trace instead.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import signal
import sys
from pathlib import Path

import click

from . import cells
from ._version import __version__
from .errors import (PrimeError, RunError, Signalled, TextgenError, handle_signals,
                     signalled)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEFAULT_RUN = "checkpoints/latest"


class TextgenGroup(click.Group):
    """Turns TextgenError into a one-line message with the error's exit code; so too an
    operating-system error no library code expected (a file that vanished, a full disk while
    writing an output file, a closed pipe), and SIGTERM / SIGINT (exit 143 / 130), which stop
    a command where it is, its temporary files removed on the way out."""

    def invoke(self, ctx):
        with _signals_raise():
            try:
                return super().invoke(ctx)
            except (Signalled, KeyboardInterrupt) as e:
                if ctx.obj and ctx.obj.get("traceback"):
                    raise
                signum = e.signum if isinstance(e, Signalled) else signal.SIGINT
                click.echo(f"Error: stopped by {signal.Signals(signum).name}", err=True)
                ctx.exit(128 + signum)
            except MemoryError:
                if ctx.obj and ctx.obj.get("traceback"):
                    raise
                click.echo(f"Error: out of memory in textgen {ctx.invoked_subcommand}; give it "
                           "less to hold (a smaller input, or smaller settings)", err=True)
                ctx.exit(1)
            except (TextgenError, OSError) as e:
                if ctx.obj and ctx.obj.get("traceback"):
                    raise
                if isinstance(e, BrokenPipeError):  # e.g. textgen sample | head: stop quietly
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                    ctx.exit(141)
                if isinstance(e, OSError):
                    e = _os_error(e, resumable=ctx.invoked_subcommand == "train")
                hint = f" ({e.cli_hint})" if e.cli_hint else ""
                click.echo(f"Error: {e}{hint}", err=True)
                ctx.exit(e.exit_code)


@contextlib.contextmanager
def _signals_raise():
    """SIGTERM, SIGINT and SIGHUP raise ``Signalled`` where the command is (``train`` installs
    its own handlers while it trains); a repeated signal, while the first one unwinds, is
    ignored, so the exit keeps the first one's meaning and clean-up is not cut short. A signal
    the caller ignores (``nohup``) stays ignored."""
    first: list[int] = []

    def handler(signum, frame):
        if not first:
            first.append(signum)
            raise signalled(signum)  # remembered: the generation loop raises it again

    try:
        with handle_signals((signal.SIGTERM, signal.SIGINT, signal.SIGHUP), handler):
            yield
    finally:
        if first:  # stopping with the first signal's exit: a late one must not change it
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)


def _os_error(e: OSError, resumable: bool = False) -> TextgenError:
    from .runs import write_error

    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return write_error(Path(e.filename or "an output file"), e, resumable)
    where = f"{e.filename}: " if e.filename else ""
    return TextgenError(f"{where}{e.strerror or e}")


def _echo_path(path) -> None:
    """A path on stdout as its bytes (a name that is not UTF-8 too), for scripts to use."""
    click.echo(os.fsencode(str(path)))


def _stdout():
    """stdout, to write a command's text to; closed (``>&-``), one line saying what to do."""
    if sys.stdout is None:
        raise TextgenError("standard output is closed; write to a file instead",
                           cli_hint="-o FILE")
    return click.open_file("-", "w", encoding="utf-8", errors="backslashreplace")


@click.group(cls=TextgenGroup, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="textgen")
@click.option("--traceback", is_flag=True, help="Show the full traceback on errors.")
@click.option("--verbose", is_flag=True,
              help="Show the frameworks' own log messages (TensorFlow's C++ banners, absl, "
                   "gRPC, JAX and PyTorch warnings), hidden by default.")
@click.pass_context
def cli(ctx, traceback, verbose):
    """Train character- or word-level LSTM language models on your own text, and generate
    from them.

    \b
    textgen train corpora/tinyshakespeare.txt --config configs/quick.toml
    textgen sample --chars 500 --temperature 0.5
    textgen info checkpoints/latest
    """
    ctx.ensure_object(dict)["traceback"] = traceback
    ctx.obj["verbose"] = verbose
    from .runs import fault

    fault("command", ctx.invoked_subcommand)  # tests signal a command once it has started


def clean_options(f):
    """The corpus-reading and cleaning flags, shared by ``train`` and ``clean``."""
    options = [
        click.option("--encoding", help="Encoding of the input files [utf-8]."),
        click.option("--glob", help="Files to read from directories [*.txt]."),
        click.option("--field", help="JSON/JSONL field holding the text, dotted for nested "
                     "records [text]."),
        click.option("--strip-gutenberg/--no-strip-gutenberg", default=None,
                     help="Cut Project Gutenberg licence header and footer."),
        click.option("--split-on", metavar="REGEX", help="Split documents at this pattern."),
        click.option("--drop-if", metavar="REGEX", help="Drop documents matching this pattern."),
        click.option("--remove-urls/--no-remove-urls", default=None, help="Delete links."),
        click.option("--unescape-html/--no-unescape-html", default=None,
                     help="Turn &gt; &amp; ... into characters."),
        click.option("--ascii-fold/--no-ascii-fold", default=None, help="Strip accents."),
        click.option("--charset", type=click.Choice(["ascii", "latin-1"]),
                     help="Keep only characters of this charset."),
        click.option("--lowercase/--no-lowercase", default=None, help="Lowercase the text."),
        click.option("--collapse-spaces/--no-collapse-spaces", default=None,
                     help="Runs of spaces and tabs -> one space."),
        click.option("--min-doc-chars", type=click.IntRange(min=0),
                     help="Drop shorter documents."),
        click.option("--max-doc-chars", type=click.IntRange(min=1),
                     help="Drop longer documents."),
        click.option("--pad-to", type=click.IntRange(min=1),
                     help="Pad/truncate each document to this length (at most 1,000,000)."),
        click.option("--pad-char", help="Padding character [space]."),
        click.option("--min-char-count", type=click.IntRange(min=0),
                     help="Drop characters seen fewer times."),
        click.option("--rare-replacement", metavar="CHAR",
                     help="Replace rare characters by CHAR instead of dropping them."),
        click.option("--doc-separator", help="Joins documents [newline]."),
        click.option("--cross-docs/--no-cross-docs", default=None,
                     help="Let training windows span documents [yes]."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


class CellChoice(click.Choice):
    """The registered recurrent cells (cells.py), read when an option is parsed or shown, so a
    cell registered by a program that calls the CLI in-process is a valid choice too."""

    def __init__(self, extra: tuple[str, ...] = ()):
        self.extra = tuple(extra)
        super().__init__(())

    @property
    def choices(self):
        return (*cells.names(), *self.extra)

    @choices.setter
    def choices(self, value):  # click.Choice.__init__ assigns it; the registry is the source
        pass


class Finite(click.FloatRange):
    """A FloatRange that also refuses nan and infinities (which compare as in range)."""

    name = "float"

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


BACKEND_HELP = ("Keras backend: tensorflow, jax or torch [KERAS_BACKEND if set, else "
                "tensorflow]; chosen before Keras is imported.")


def backend_option(f):
    return click.option("--backend", type=click.Choice(["tensorflow", "jax", "torch"]),
                        help=BACKEND_HELP)(f)


def _quiet_unless_verbose() -> None:
    """Keep the frameworks' own log messages hidden unless ``textgen --verbose``."""
    from .backends.base import set_verbose

    set_verbose(bool((click.get_current_context().find_root().obj or {}).get("verbose")))


def _use_backend(name: str | None) -> str:
    """Select Keras's backend for this process before anything imports Keras (devices.py)."""
    from .devices import select_backend

    ctx = click.get_current_context()
    return select_backend(name, verbose=bool((ctx.find_root().obj or {}).get("verbose")))


POSITIVE = Finite(min=0, min_open=True)
FRACTION = Finite(0, 1, max_open=True)  # [0, 1)


def _parse_styles(ctx, param, values) -> dict[str, list[str]]:
    """--style NAME=CORPUS (repeatable; a name given twice gathers both corpora)."""
    import re

    styles: dict[str, list[str]] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not re.fullmatch(r"[\w.-]+", name) or not path:
            raise click.BadParameter(f"expected NAME=CORPUS (e.g. sonnets=corpora/sonnets.txt), "
                                     f"got {value!r}")
        styles.setdefault(name, []).append(path)
    if len(styles) == 1:
        raise click.BadParameter("give two or more styles to tell apart, e.g. --style "
                                 "sonnets=corpora/sonnets.txt --style plays=corpora/tinyshakespeare.txt")
    return styles


@cli.command(context_settings=CONTEXT)
@click.argument("corpus", nargs=-1)
@click.option("--config", "config_file", metavar="FILE|NAME",
              help="TOML config (e.g. configs/quick.toml, or just 'quick').")
@click.option("--style", "styles", multiple=True, metavar="NAME=CORPUS", callback=_parse_styles,
              help="Train one model on several styles, each from its own corpus (repeat; "
                   "replaces CORPUS); sample with --style NAME.")
@click.option("--style-field", metavar="FIELD",
              help="JSON/JSONL CORPUS: the record field naming each record's style.")
@click.option("--style-balance", type=Finite(0, 1), metavar="A",
              help="Draw each style's windows in proportion to (its windows)^(1-A): 1 = all "
                   "styles equally often, 0 = as in the text [0.5].")
@click.option("--style-dim", type=click.IntRange(min=1),
              help="Style embedding size [16], at most 16,384.")
@click.option("--level", type=click.Choice(["char", "word"]),
              help="Tokens: characters, or words with punctuation and newlines [char].")
@click.option("--max-words", type=click.IntRange(min=1),
              help="Word level: vocabulary size; rarer words become <unk> [10000].")
@click.option("--out", type=click.Path(path_type=Path),
              help="Run folder to create (default: checkpoints/<corpus>-<timestamp>).")
@click.option("--resume", is_flag=True, help="Continue the unfinished run in --out.")
@click.option("--init-from", type=click.Path(path_type=Path), metavar="RUN",
              help="Start a new run from RUN's best weights (a run folder or its weights.h5): "
                   "same model shape, vocabulary merged, optimizer fresh.")
@click.option("--save-every", type=click.IntRange(min=1), metavar="STEPS",
              help="Also save a resumable checkpoint every STEPS steps (always every epoch).")
@click.option("--epochs", type=click.IntRange(min=1),
              help="Passes over the training windows [10], at most 1,000,000.")
@click.option("--steps-per-epoch", type=click.IntRange(min=1),
              help="Cap the steps in each epoch [one full pass].")
@click.option("--window", type=click.IntRange(min=1), help="Characters per training window [40].")
@click.option("--step", type=click.IntRange(min=1), help="Characters between window starts [3].")
@click.option("--val-split", type=FRACTION,
              help="Fraction held out from the end of the text for validation [0.1].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Windows per step [128].")
@click.option("--cell", type=CellChoice(), help="Recurrent cell [lstm].")
@click.option("--layers", type=click.IntRange(min=1), help="Recurrent layers [2], at most 64.")
@click.option("--units", type=click.IntRange(min=1),
              help="Units per recurrent layer [128], at most 16,384.")
@click.option("--dropout", type=FRACTION,
              help="Dropout after each recurrent layer [0.2].")
@click.option("--embedding-dim", type=click.IntRange(min=1),
              help="Character embedding size [64], at most 16,384.")
@click.option("--optimizer", type=click.Choice(["rmsprop", "adam", "adagrad", "sgd"]),
              help="Optimizer [rmsprop].")
@click.option("--lr", type=POSITIVE, help="Learning rate [0.01].")
@click.option("--clipnorm", type=Finite(min=0), help="Gradient norm clip, 0 = off [5].")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1),
              help="Random seed, 0 to 2^32-1 [drawn and recorded].")
@click.option("--patience", type=click.IntRange(min=1),
              help="Stop after N epochs without a better validation loss [off].")
@click.option("--max-minutes", type=POSITIVE,
              help="Stop at the last epoch end that fits in this many minutes [off].")
@click.option("--sample-every", type=click.IntRange(min=0),
              help="Print and save samples every N epochs, 0 = never [1].")
@click.option("--sample-chars", type=click.IntRange(min=1),
              help="Characters per sample during training [200], at most 100,000.")
@click.option("--tensorboard/--no-tensorboard", default=None,
              help="Write TensorBoard logs to RUN/tensorboard [off].")
@backend_option
@click.option("--strategy", type=click.Choice(["auto", "one", "mirrored", "multiworker"]),
              help="Devices: TensorFlow: tf.distribute (mirrored = this machine's GPUs, "
                   "multiworker = TF_CONFIG); JAX: DataParallel (mirrored = this machine's "
                   "devices, multiworker = KERAS_DISTRIBUTION_* processes); PyTorch: one device "
                   "only; auto = mirrored if several devices [auto].")
@click.option("--precision", type=click.Choice(["float32", "mixed_float16", "mixed_bfloat16"]),
              help="Mixed precision on GPUs (refused on CPU) [float32].")
@clean_options
def train(corpus, config_file, out, resume, init_from, save_every, styles, **flags):
    """Train a model on CORPUS (files or directories) and save a run folder.

    Settings come from the defaults, then --config, then these flags. The run folder holds the
    best weights, vocabulary, resolved config and a CSV log; checkpoints/latest points at it.
    Progress goes to stderr; the run folder's path is printed on stdout.

    The same model trains on TensorFlow, JAX or PyTorch (--backend; a resumed run may switch).
    TensorFlow only: tf.distribute strategies, and on a CPU-only machine of 2 cores or fewer
    the batch split into chains, the unrolled loop and one thread per op. JAX: DataParallel
    over several devices or processes. PyTorch: one device.

    \b
    textgen train corpora/tinyshakespeare.txt
    textgen train corpora/ --config configs/quick.toml --out checkpoints/demo
    textgen train corpora/tinyshakespeare.txt --out checkpoints/demo --resume
    textgen train --style sonnets=corpora/sonnets.txt --style plays=corpora/tinyshakespeare.txt
    textgen train corpora/sonnets.txt --level word --max-words 5000
    textgen train my-lyrics.txt --init-from checkpoints/shakespeare --max-minutes 3
    """
    from .api import train_as
    from .config import FLAGS_SOURCE

    if styles and flags["style_field"]:
        raise click.UsageError("give --style NAME=CORPUS or --style-field, not both")
    if resume and out is None:
        raise click.UsageError("--resume needs --out RUN_DIR (the run to continue)")
    if styles and corpus:
        raise click.UsageError("give CORPUS or --style NAME=CORPUS options, not both")
    if not styles and not corpus:
        raise click.UsageError("give a CORPUS to train on (or --style NAME=CORPUS twice)")
    if init_from is not None and resume:
        raise click.UsageError("give --resume or --init-from, not both")
    _quiet_unless_verbose()  # the backend itself is chosen once the config is resolved
    settings = {k: v for k, v in flags.items() if v is not None}
    run = train_as(FLAGS_SOURCE, list(corpus) or None, config=config_file, out=out,
                   resume=resume, init_from=init_from, styles=styles or None,
                   save_every=save_every, **settings)
    state = run.state
    unit = "char" if run.config.tokens.level == "char" else "token"
    best = "n/a" if state.get("best_loss") is None else f"{state['best_loss']:.4f} nats/{unit}"
    stopped = f"; stopped by {state['stopped']}" if state.get("stopped") else ""
    click.echo(f"trained {state.get('epochs_done', 0)} epochs ({state.get('steps_done', 0)} "
               f"steps); best loss {best}{stopped}", err=True)
    out = run.path
    _echo_path(out)


@cli.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True)
@click.option("--output", "-o", type=click.Path(path_type=Path),
              help="Write the cleaned text to FILE (refuses to overwrite) [stdout].")
@click.option("--report", is_flag=True, help="Print what each rule did to stderr.")
@click.option("--report-json", type=click.Path(path_type=Path), metavar="FILE",
              help="Write the full report as JSON.")
@click.option("--config", "config_file", metavar="FILE|NAME",
              help="TOML config whose [clean] (and [window]) tables apply.")
@clean_options
def clean(inputs, output, report, report_json, config_file, **flags):
    """Clean INPUT files (or directories, JSON/JSONL, - for stdin) by the same rules as train.

    \b
    textgen clean book.txt --strip-gutenberg -o book.clean.txt --report
    textgen clean tweets.json --field text --remove-urls --unescape-html --charset ascii
    textgen clean lyrics/ --glob "*.lyr" --encoding cp1252 --collapse-spaces -o lyrics.txt
    """
    from .config import by_section, preset_path, resolve
    from .data import prepare
    from .runs import write_json, write_text

    for path in (output, report_json):
        if path is not None and path.exists():
            raise click.UsageError(f"{path} already exists; choose another name or remove it")
    if output is not None and report_json is not None and \
            output.resolve() == report_json.resolve():
        raise click.UsageError("--output and --report-json name the same file; give two names")
    config = resolve(None if config_file is None else preset_path(config_file),
                     by_section(flags))
    prep = prepare(list(inputs), config, keep_text=True, need_windows=False)
    if report:
        click.echo(prep.describe(), err=True)
    if report_json is not None:
        write_json(report_json, prep.report, resumable=False)
    if output is None:
        with _stdout() as sink:
            sink.write(prep.text)
    else:
        write_text(output, prep.text, resumable=False)


def sampling_options(f):
    """The sampling settings' options, made from their one declaration (sampling.py): names,
    help and types; values are checked once, by SampleRequest (``_request``). ``--temperature``
    may be repeated: one block of samples per value."""
    from .sampling import SETTINGS, cli_fields

    kinds = {int: click.INT, float: click.FLOAT, str: click.STRING}
    options = []
    for name, setting in cli_fields().items():
        swept = name in SWEPT
        flags = [setting.cli, *(["--diversity"] if name == "temperature" else [])]
        range_ = setting.describe_range()
        default = SETTINGS[name].kind is int and name == "n"
        options.append(click.option(
            *flags, name, type=kinds[setting.kind], multiple=swept or setting.many > 1,
            default=1 if default else None, show_default=default,
            help=setting.help[0].upper() + setting.help[1:] + (f" ({range_})" if range_ else "")
                 + ("; repeat for one block per value [1.0]" if swept else "")
                 + (f"; repeat for up to {setting.many}" if setting.many > 1 else "") + "."))
    for option in reversed(options):
        f = option(f)
    return f


SWEPT = {"temperature"}  # sampling settings the command line may repeat (one block per value)


@cli.command(context_settings=CONTEXT)
@click.option("--run", "run_dir", default=DEFAULT_RUN, show_default=True,
              type=click.Path(path_type=Path), help="Run folder to sample from.")
@sampling_options
@click.option("--prime-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the prime text from a file.")
@click.option("--output", "-o", type=click.Path(path_type=Path),
              help="Write to FILE instead of stdout (refuses to overwrite).")
@click.option("--stream", is_flag=True, help="Print characters as they are generated.")
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text",
              show_default=True, help="jsonl: one record per sample with its settings.")
@click.option("--replay", metavar="RECORD", help="Regenerate a JSONL record (JSON text).")
def sample(run_dir, prime_file, output, stream, fmt, replay, **settings):
    """Generate text from a trained run (NumPy only: starts in well under a second).

    --prime random starts from a random training passage, one window long.

    \b
    textgen sample --chars 500 --temperature 0.2
    textgen sample --lines 4 --temperature 0.2 --temperature 0.5 --temperature 1.0
    textgen sample --prime "ROMEO:" --n 3 --seed 1 --format jsonl
    textgen sample --style sonnets --lines 14 --temperature 0.5
    """
    from .sample import load

    record = None
    if replay is not None:
        record = _parse_record(replay)
        run_dir = Path(record.get("run", run_dir)) if run_dir == Path(DEFAULT_RUN) else run_dir
    if settings["prime"] is not None and prime_file is not None:
        raise click.UsageError("give --prime or --prime-file, not both")
    if prime_file is not None:
        settings["prime"] = _read_prime_file(prime_file)
    if stream and settings["n"] > 1:
        raise click.UsageError("--stream prints one sample at a time; use it with --n 1")
    if output is not None and str(output) != "-" and output.is_dir():
        raise click.UsageError(f"{output} is a folder; give a file name, e.g. {output}/out.txt")
    if output is not None and str(output) != "-" and output.exists():
        raise click.UsageError(f"{output} already exists; choose another --output or remove it")

    gen = load(run_dir)
    requests = _sample_requests(gen, record, settings)
    with _output(output) as sink:
        for req in requests:
            _write_samples(sink, gen, req, run_dir, fmt, stream, record,
                           headers=fmt == "text" and (len(requests) > 1 or req.n > 1))


@contextlib.contextmanager
def _output(path: Path | None):
    """stdout, or a temp file beside ``path`` renamed to it once complete: on any error or
    signal (Signalled) the temp file is removed and ``path`` never appears."""
    if path is None or str(path) == "-":
        with _stdout() as sink:
            yield sink
        return
    from .runs import atomic_path, fault, write_error

    try:
        with atomic_path(path) as tmp:  # a non-UTF-8 path in a JSON record: its \udcXX escape
            with open(tmp, "w", encoding="utf-8", errors="backslashreplace") as sink:
                yield sink
            fault("write", path.name)
    except OSError as e:
        raise write_error(path, e, resumable=False) from None


def _request(**values):
    """A SampleRequest; a value it refuses is a usage error naming the option."""
    from .sampling import SETTINGS, SampleRequest, SamplingError

    try:
        return SampleRequest(**values)
    except SamplingError as e:
        raise click.BadParameter(str(e), param_hint=f"'{SETTINGS[e.field].cli}'") from None


def _sample_requests(gen, record, settings: dict) -> list:
    from .sampling import request_of

    if record is not None:
        if record.get("weights") not in (None, gen.weights_hash):
            raise RunError(f"record was made with weights {record['weights']}, this run has "
                           f"{gen.weights_hash}; sample from the run that made it",
                           cli_hint="pass --run with that run folder")
        return [request_of(record)]
    values = {k: (v or None) if isinstance(v, tuple) else v for k, v in settings.items()}
    if values["prime"] == "random":
        values["prime"] = gen.random_prime(values["seed"])
    temperatures = values.pop("temperature") or (1.0,)
    return [_request(**values, temperature=t) for t in temperatures]


def _write_samples(sink, gen, req, run_dir, fmt, stream, record, headers) -> None:
    """One request's samples to ``sink``: as text (streamed as generated with ``stream``) or as
    JSONL records."""
    from .sampling import SETTINGS, SamplingError
    from .sampling import record as make_record

    # One text sample is written as it is generated, in constant memory (flushed per
    # character with --stream); several are generated as a batch and written at the end.
    streaming = fmt == "text" and req.n == 1 and (req.stop is None or gen.vocab.level == "char")
    try:  # every check first: a refused request writes nothing, not even its prime
        job = gen.job(req, keep=not streaming)
    except PrimeError as e:
        raise _usage(e) from None
    except SamplingError as e:
        raise click.BadParameter(str(e), param_hint=f"'{SETTINGS[e.field].cli}'") from None
    if streaming:
        if headers:
            sink.write(_header(req, 0))
        if req.prime is not None:
            sink.write(req.prime)

    def on_text(b, text):
        sink.write(text)
        if stream:
            sink.flush()

    results = gen.complete(job, on_text=on_text if streaming else None)
    for s in results:
        if record is not None and s.index != record.get("index", 0):
            continue
        if fmt == "jsonl":
            rec = make_record(req, s.text, s.prime, s.seed, s.index, gen.weights_hash, run_dir)
            sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
        elif streaming:
            sink.write("\n")
        else:
            if headers:
                sink.write(_header(req, s.index))
            sink.write((req.prime or "") + s.text + "\n")


def _usage(e) -> click.UsageError:
    """A library error about how a command was used, as a usage error (exit 2)."""
    return click.UsageError(str(e) + (f" ({e.cli_hint})" if e.cli_hint else ""))


def _header(req, index) -> str:
    return f"----- temperature {req.temperature:g}, sample {index + 1} of {req.n}\n"


def _parse_record(text: str) -> dict:
    from .sampling import parse_record

    try:
        return parse_record(text)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--replay'") from None


PRIME_FILE_MAX = 1_000_000  # bytes: a prime is context, not a corpus (nor is a passage)


def _read_prime_file(path: Path, what: str = "prime", param_hint: str = "--prime-file") -> str:
    """A prime (or a passage to classify): at most PRIME_FILE_MAX bytes of UTF-8 text, read
    no further than that (``/dev/zero`` is refused after PRIME_FILE_MAX + 1 bytes)."""
    with path.open("rb") as f:
        data = f.read(PRIME_FILE_MAX + 1)
    if len(data) > PRIME_FILE_MAX:
        raise click.BadParameter(f"{path} is over {PRIME_FILE_MAX:,} bytes; a {what} is the "
                                 "start of a text, give a shorter one", param_hint=param_hint)
    nul = data.find(b"\x00")
    if nul != -1:
        raise click.BadParameter(f"{path}: looks like a binary file (NUL byte at offset {nul}); "
                                 f"give the {what} as UTF-8 text", param_hint=param_hint)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise click.BadParameter(f"{path}: byte 0x{data[e.start]:02x} at offset {e.start} is not "
                                 f"UTF-8; save the {what} as UTF-8",
                                 param_hint=param_hint) from None


@cli.command(context_settings=CONTEXT)
@click.argument("run_dir", default=DEFAULT_RUN, type=click.Path(path_type=Path))
@click.option("--corpus", type=click.Path(exists=True, dir_okay=False),
              help="Held-out text to score (cleaned by the run's rules) [validation split].")
@click.option("--order", type=click.IntRange(1, 12), default=6, show_default=True,
              help="Order of the Kneser-Ney character n-gram baseline.")
@click.option("--samples", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also measure the novelty of N generated samples.")
@click.option("--sample-chars", type=click.IntRange(min=20), default=500, show_default=True,
              help="Characters per novelty sample.")
@click.option("--temperature", type=Finite(min=0), default=1.0, show_default=True,
              help="Temperature of the novelty samples.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed for the novelty samples and reference passages.")
@click.option("--train-corpus", multiple=True,
              help="The training text, if it moved since training (repeatable).")
@click.option("--style", help="Styled runs: the style to score --corpus text (and novelty "
              "samples) under.")
@click.option("--classify", "classify_", is_flag=True,
              help="Styled runs: accuracy of telling held-out passages' styles apart, beside "
                   "a character n-gram naive Bayes baseline.")
@click.option("--passage-chars", type=click.IntRange(min=10), default=300, show_default=True,
              help="Characters per held-out passage for --classify.")
@click.option("--passages", type=click.IntRange(min=1), default=100, show_default=True,
              help="Most passages per style for --classify.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@backend_option
def evaluate(run_dir, corpus, order, samples, sample_chars, temperature, seed, train_corpus,
             style, classify_, passage_chars, passages, as_json, backend):
    """Held-out loss (nats/char, bits/char, perplexity) beside baselines, and novelty.

    Baselines are fitted on the run's training text: the untrained model, a unigram model and a
    Kneser-Ney character n-gram. With --samples, generated text is compared with held-out real
    text: TF-IDF distance to the nearest training window, and the longest verbatim copy.

    \b
    textgen evaluate checkpoints/latest
    textgen evaluate checkpoints/latest --samples 20 --temperature 0.8
    textgen evaluate checkpoints/latest --corpus other-play.txt --order 5
    textgen evaluate checkpoints/latest --classify --passage-chars 300
    """
    from .api import open_run

    _use_backend(backend)  # scoring runs the NumPy network: no framework is imported
    result = open_run(run_dir).evaluate(
        corpus, order=order, samples=samples, sample_chars=sample_chars, temperature=temperature,
        seed=seed, train_corpus=list(train_corpus) or None, style=style, classify=classify_,
        passage_chars=passage_chars, passages=passages)
    click.echo(json.dumps(result.raw, indent=2) if as_json else result.text())


@cli.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("text", required=False)
@click.option("--file", "file_", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the passage from FILE.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def classify(run_dir, text, file_, as_json):
    """Which style of RUN (trained with --style) is likeliest to have written TEXT.

    Prints the style, then each style's log-likelihood of the passage (highest first).

    \b
    textgen classify checkpoints/latest "Shall I compare thee to a summer's day?"
    textgen classify checkpoints/latest --file passage.txt --json
    """
    from .classify import classify_text, format_classification
    from .sample import load

    if (text is None) == (file_ is None):
        raise click.UsageError("give the passage as TEXT or --file FILE (one of them)")
    if file_ is not None:
        text = _read_prime_file(file_, "passage", "--file")
    try:
        result = classify_text(load(run_dir), text)
    except PrimeError as e:
        raise _usage(e) from None
    click.echo(json.dumps(result, indent=2, ensure_ascii=False) if as_json
               else format_classification(result))


@cli.command("check-gradients", context_settings=CONTEXT)
@click.option("--cell", type=CellChoice(extra=("all",)), default="all", show_default=True,
              help="Cell type(s) to check.")
@click.option("--layers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--units", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--tolerance", type=float, default=1e-6, show_default=True,
              help="Largest relative error accepted (float64).")
@backend_option
def check_gradients_cmd(cell, layers, units, seed, tolerance, backend):
    """Compare the backend's gradients with numerical ones on a tiny float64 model.

    Prints, per weight tensor, the largest relative error between the framework's gradient and
    a central difference; exits 1 if any exceeds --tolerance.

    \b
    textgen check-gradients
    textgen check-gradients --cell lstm --units 8
    textgen check-gradients --backend jax
    """
    backend = _use_backend(backend)
    from .config import ModelConfig
    from .errors import TextgenError
    from .gradcheck import check_gradients, format_rows

    failed = False
    for c in (cells.names() if cell == "all" else [cell]):
        cfg = ModelConfig(cell=c, layers=layers, units=units, embedding_dim=4, dropout=0.0)
        rows = check_gradients(cfg, seed=seed)
        click.echo(f"{c}: {layers} x {units} units, float64, central differences, "
                   f"{backend} backend\n"
                   + format_rows(rows, tolerance) + "\n")
        failed |= any(r.max_rel_error > tolerance for r in rows)
    if failed:
        raise TextgenError(f"some gradients differ from numerical ones by more than {tolerance}")


@cli.command(context_settings=CONTEXT)
@click.argument("run_dir", default=DEFAULT_RUN, type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("loss.png"),
              show_default=True, help="PNG file to write.")
@click.option("--force", is_flag=True, help="Replace --output if it exists.")
def plot(run_dir, output, force):
    """Plot training and validation loss (and perplexity) against steps.

    Needs matplotlib: pip install "textgen[plot]".

    \b
    textgen plot checkpoints/latest -o loss.png
    """
    from .api import open_run

    if output.exists() and not force:
        raise click.UsageError(f"{output} already exists; pass --force or choose another -o")
    open_run(run_dir).plot(output, overwrite=force)
    _echo_path(output)


@cli.command(context_settings=CONTEXT)
@click.argument("run_dir", default=DEFAULT_RUN, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--devices", is_flag=True,
              help="Also report the devices the backend sees and whether the fused cuDNN "
                   "kernel applies (imports the framework; RUN is optional then).")
@backend_option
def info(run_dir, as_json, devices, backend):
    """Summarise a run folder: config, vocabulary, parameters, progress, best loss.

    \b
    textgen info checkpoints/latest
    textgen info --devices
    textgen info --devices --backend jax
    """
    from .api import open_run

    _use_backend(backend)
    summary = {}
    if not devices or run_dir != Path(DEFAULT_RUN) or run_dir.exists():
        summary = open_run(run_dir).summary()
    if devices:
        from .devices import describe_devices

        cell = summary.get("model", {}).get("cell")
        summary["devices"] = describe_devices(cell)
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    for key, value in summary.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {v!r}" if isinstance(v, str) else f"  {k}: {v}")
        else:
            click.echo(f"{key}: {value}")


def _export_output(ctx, param, value):
    if value is not None and value.suffix.lower() not in (".html", ".htm", ".keras"):
        raise click.BadParameter(f"{value}: name the output .html (a web page) or .keras "
                                 "(a Keras model)")
    return value


@cli.command(context_settings=CONTEXT)
@click.argument("run_dir", metavar="RUN", default=DEFAULT_RUN, type=click.Path(path_type=Path))
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path),
              callback=_export_output,
              help="FILE.html: a self-contained web page; FILE.keras: a Keras model. "
                   "Refuses to overwrite.")
def export(run_dir, output):
    """Export RUN as one self-contained web page (.html) or a standard Keras model (.keras).

    The page holds the weights (float32), vocabulary, config and a JavaScript copy of the NumPy
    sampler; it makes no network request (a Content-Security-Policy forbids them), so it works
    opened from disk or from any static host. It has prime text, length, temperature (quick
    picks 0.2 / 0.5 / 1.0), top-k, top-p, min-p, seed, a style picker for styled runs,
    Generate, Stop and Copy, and shows text as it is generated. It supports every cell textgen trains, any
    depth, character and word level.

    At temperature 0 the page writes exactly what `textgen sample --temperature 0` prints for
    the same prime; its next-token probabilities agree with the NumPy sampler to 1e-4. With a
    temperature, draws come from the page's own seeded generator (mulberry32): a page seed
    always gives the same text in the page, but page seeds and CLI --seed values are different
    random streams, so they give different texts.

    \b
    Query parameters: the page's sampling settings (prime, chars up to 100,000, temperature,
    top_k, top_p, min_p, seed 0 to 2^32-1, style); autorun=1 generates on load, writes prime +
    text into the element #output and sets data-done="1" on it; debug=probs writes the
    next-token distributions after each prime token as JSON into #output
    (window.textgenProbs(prime, {temperature, top_k, top_p, min_p, style}) returns the same).
    For a headless browser:
      chromium --headless --virtual-time-budget=60000 --dump-dom \\
        "file:///path/page.html?prime=ROMEO:&chars=200&temperature=0&autorun=1"

    .keras: Embedding -> RNN layers -> Dropout -> Dense logits (plus the style input for styled
    runs), built-in layers only: keras.saving.load_model(path) opens it without custom objects;
    softmax of its last logits is the sampler's next-token distribution. Needs TensorFlow.

    \b
    textgen export checkpoints/latest -o shakespeare.html
    textgen export checkpoints/latest -o shakespeare.keras
    """
    from .api import open_run

    if output.suffix.lower() == ".keras":
        _use_backend(None)  # KERAS_BACKEND checked, the frameworks' banners kept quiet
    _echo_path(open_run(run_dir).export(output))


def _parse_models(ctx, param, values) -> dict[str, Path]:
    """RUN or NAME=RUN, each a model named after its folder (or NAME)."""
    import re

    models: dict[str, Path] = {}
    for value in values or (DEFAULT_RUN,):
        name, sep, path = value.partition("=")
        if not sep or not re.fullmatch(r"[\w.-]+", name):
            name, path = Path(value).name, value
        if name in models:
            raise click.BadParameter(f"two models named {name!r}; name them: NAME=RUN")
        models[name] = Path(path)
    return models


@cli.command(context_settings=CONTEXT)
@click.argument("runs", nargs=-1, metavar="[NAME=]RUN...", callback=_parse_models)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback by default; 0.0.0.0 for every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--api-key-env", metavar="VAR",
              help="Require 'Authorization: Bearer KEY' on /v1/, KEY being this environment "
                   "variable's value.")
@click.option("--max-chars", type=click.IntRange(min=1), default=16384, show_default=True,
              help="Most tokens (characters, or words) a request may ask for, over all its "
                   "choices; its prompts (times n) are held to the same number.")
@click.option("--max-concurrent", type=click.IntRange(min=1), default=64, show_default=True,
              help="Requests generating at once; their samples are stepped together.")
@click.option("--max-queued", type=click.IntRange(min=0), default=256, show_default=True,
              help="Requests waiting for a slot; more get a 429.")
@click.option("--max-body", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              metavar="BYTES", help="Largest request body; larger gets a 413.")
@click.option("--cors-origin", "cors", multiple=True, metavar="ORIGIN",
              help="Allow browser pages from ORIGIN to call the API (repeatable; * for any).")
@click.option("--grace", type=Finite(min=0), default=30, show_default=True, metavar="SECONDS",
              help="After SIGTERM or SIGINT, how long requests in flight may take to finish.")
@click.option("--chunk-ms", type=Finite(min=0, max=10_000), default=50, show_default=True, metavar="MS",
              help="A stream sends its new text at most this often (its first text at once; "
                   "0: after every step). Fewer, larger chunks leave more CPU for generating.")
def serve(runs, host, port, api_key_env, max_chars, max_concurrent, max_queued, max_body,
          cors, grace, chunk_ms):
    """Serve trained runs over HTTP with an OpenAI-compatible completions API.

    Each RUN is a model named after its folder (or NAME). Concurrent requests for a model are
    generated together in one batch. Endpoints: POST /v1/completions, GET /v1/models,
    GET /health, and GET / with each model's web page. Needs: pip install "textgen[serve]".

    \b
    textgen serve checkpoints/shakespeare
    textgen serve bard=checkpoints/shakespeare lyrics=checkpoints/lyrics --port 8080
    TEXTGEN_KEY=secret textgen serve checkpoints/latest --host 0.0.0.0 --api-key-env TEXTGEN_KEY
    """
    from .serve import ServeConfig
    from .serve import serve as run_server

    key = None
    if api_key_env is not None:
        key = os.environ.get(api_key_env)
        if not key:
            raise click.BadParameter(f"the environment variable {api_key_env} is not set (or "
                                     "empty); set it to the key clients must send",
                                     param_hint="'--api-key-env'")
    if key is None and not _loopback(host):
        click.echo(f"warning: serving on {host} without an API key: anyone who can reach this "
                   "machine can use it (set --api-key-env)", err=True)
    _need_serve_extra()
    run_server(runs, ServeConfig(host=host, port=port, api_key=key, max_chars=max_chars,
                                 max_concurrent=max_concurrent, max_queued=max_queued,
                                 max_body=max_body, cors_origins=tuple(cors), grace=grace,
                                 chunk_ms=chunk_ms))


def _loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _need_serve_extra() -> None:
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise TextgenError(f"textgen serve needs {' and '.join(missing)}: "
                           'pip install "textgen[serve]"')


def main() -> None:
    _fill_closed_standard_streams()
    if hasattr(sys.stdout, "reconfigure"):  # a non-UTF-8 name (a lone surrogate in Python) is
        sys.stdout.reconfigure(errors="backslashreplace")  # printed as \udcXX, valid in JSON
    cli(prog_name="textgen")


def _fill_closed_standard_streams() -> None:
    """A standard stream the caller closed (``2>&-``): its descriptor is given /dev/null, so
    that no file textgen opens takes that number and receives what C++ libraries write to
    stderr; messages for a closed stderr are dropped (not sent to stdout, as print would)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            got = os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: fd
            if got != fd:
                os.close(got)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")
