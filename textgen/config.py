"""Typed, immutable configuration for every stage, and how it is resolved.

Precedence: defaults in these dataclasses < a TOML file (``--config``) < command-line flags.
The fully resolved ``Config`` is written to the run folder as ``config.json``; it is all that
``sample`` and ``info`` need to rebuild the network.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from . import cells
from .errors import ConfigError

STRATEGIES = ("auto", "one", "mirrored", "multiworker")
BACKENDS = ("tensorflow", "jax", "torch")  # Keras backends textgen trains on
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("rmsprop", "adam", "adagrad", "sgd")


CHARSETS = ("ascii", "latin-1")
LEVELS = ("char", "word")


@dataclass(frozen=True)
class CleanConfig:
    """How corpus inputs are read and cleaned; corpus.py documents the order rules apply in."""

    encoding: str = "utf-8"  # codec for every input file; decoding errors are fatal
    glob: str = "*.txt"  # which files to take from a directory (searched recursively)
    field: str | None = None  # JSON/JSONL: the record field holding the text (default "text")
    style_field: str | None = None  # JSON/JSONL: the record field naming each record's style
    strip_gutenberg: bool = False  # cut Project Gutenberg licence header and footer
    split_on: str | None = None  # regex: split documents further (e.g. "\n\n+")
    drop_if: str | None = None  # regex: drop whole documents that match (e.g. "http")
    remove_urls: bool = False
    unescape_html: bool = False  # &gt; -> >, &amp; -> &
    ascii_fold: bool = False  # á -> a
    charset: str | None = None  # ascii | latin-1: drop characters outside it
    lowercase: bool = False
    collapse_spaces: bool = False  # runs of spaces/tabs -> one space
    min_doc_chars: int = 0  # drop shorter documents
    max_doc_chars: int | None = None  # drop longer documents
    pad_to: int | None = None  # pad/truncate every document to this many characters
    pad_char: str = " "
    min_char_count: int = 0  # characters seen fewer times are dropped (or replaced)
    rare_replacement: str | None = None  # replace rare characters by this one instead
    doc_separator: str = "\n"  # joins documents; part of the vocabulary
    cross_docs: bool = True  # False: every training window lies inside one document

    def validate(self) -> None:
        import codecs
        import re

        try:
            codec = codecs.lookup(self.encoding)
        except LookupError:
            raise ConfigError(f"clean.encoding: unknown encoding {self.encoding!r}") from None
        if not getattr(codec, "_is_text_encoding", True):  # rot13, base64, hex, zlib ...
            raise ConfigError(f"clean.encoding: {self.encoding!r} is not a text encoding; "
                              "give the files' character encoding (e.g. utf-8, cp1252, latin-1)")
        if not self.glob:
            raise ConfigError("clean.glob must not be empty")
        check_glob(self.glob, ConfigError)
        for name in ("split_on", "drop_if"):
            pattern = getattr(self, name)
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as e:
                    raise ConfigError(f"clean.{name}: invalid regular expression "
                                      f"{pattern!r} ({e})") from None
        if self.charset is not None and self.charset not in CHARSETS:
            raise ConfigError(f"clean.charset must be one of {', '.join(CHARSETS)}, "
                              f"got {self.charset!r}")
        for name in ("pad_char", "rare_replacement"):
            value = getattr(self, name)
            if value is not None and len(value) != 1:
                raise ConfigError(f"clean.{name} must be one character, got {value!r}")
        for name in ("min_doc_chars", "min_char_count"):
            if getattr(self, name) < 0:
                raise ConfigError(f"clean.{name} must be >= 0")
        for name in ("max_doc_chars", "pad_to"):
            if getattr(self, name) is not None:
                _positive(f"clean.{name}", getattr(self, name))
        _at_most("clean.pad_to", self.pad_to, PAD_TO_MAX)


def check_glob(pattern: str, error=ConfigError) -> None:
    """Refuse a directory pattern that is absolute or climbs out (``..``): it must name files
    inside the directory it is applied to."""
    parts = re.split(r"[\\/]+", pattern)
    if (pattern.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", pattern)
            or ".." in parts):
        raise error(f"clean.glob {pattern!r} must be a pattern relative to the directory, "
                    "without '..' or a leading '/' (e.g. '*.txt' or 'books/*.txt')")


# Padding makes text out of nothing: every document this long at most (a record format's fixed
# length is a few hundred characters; a million is far past any).
PAD_TO_MAX = 1_000_000
# Counts a framework takes as 32-bit integers (window, step, batch, steps per epoch), and
# epochs: a million passes is far past any run, and keeps epochs x steps within 64 bits.
INT32_MAX = 2**31 - 1
EPOCHS_MAX = 1_000_000


@dataclass(frozen=True)
class TokenConfig:
    """What a token is: a character, or a word (vocab.py describes word tokens)."""

    level: str = "char"  # char | word
    max_words: int = 10000  # word level: vocabulary size, besides <unk> for all other words

    def validate(self) -> None:
        if self.level not in LEVELS:
            raise ConfigError(f"tokens.level must be one of {', '.join(LEVELS)}, "
                              f"got {self.level!r}")
        _positive("tokens.max_words", self.max_words)


@dataclass(frozen=True)
class WindowConfig:
    """How the id sequence is cut into training windows."""

    window: int = 40  # characters of context per training sequence (and targets per window)
    step: int = 3  # characters between the starts of consecutive windows
    val_split: float = 0.1  # fraction of the text, taken from its end, held out for validation
    batch_size: int = 128  # windows per training step
    # With --style: a style's windows are repeated (largest / own)^style_balance times: 1 draws
    # every style equally often, 0 as in the text. 0.5 classified held-out plays vs sonnets
    # passages better (97.7% vs 90.2%) than 1, which overfits the small style.
    style_balance: float = 0.5

    def validate(self) -> None:
        for name in ("window", "step", "batch_size"):
            _positive(f"window.{name}", getattr(self, name))
            _at_most(f"window.{name}", getattr(self, name), INT32_MAX)
        if not (0.0 <= self.val_split < 1.0):
            raise ConfigError(f"window.val_split must be in [0, 1), got {self.val_split}")
        if not (0.0 <= self.style_balance <= 1.0):
            raise ConfigError(f"window.style_balance must be in [0, 1], got {self.style_balance}")


# Upper bounds of the model's sizes, far above what trains on one machine (2 x 128 is the
# default; 16,384 units make an LSTM layer of 2 GB of float32 weights): a config.json or flag
# beyond them is a mistake or a crafted file, refused before any loop or allocation uses it.
MODEL_LIMITS = {"layers": 64, "units": 16384, "embedding_dim": 16384, "style_dim": 16384}


@dataclass(frozen=True)
class ModelConfig:
    """The network: Embedding -> layers x RNN cell (Dropout between) -> Dense logits."""

    cell: str = "lstm"  # a registered cell (cells.py)
    layers: int = 2
    units: int = 128  # hidden units per recurrent layer
    dropout: float = 0.2  # after each recurrent layer (never recurrent dropout: keeps cuDNN)
    embedding_dim: int = 64  # size of the learned character embedding
    style_dim: int = 16  # with --style: size of the style embedding fed at every step

    def validate(self) -> None:
        if not isinstance(self.cell, str):
            raise ConfigError(f"model.cell must be a string, got {self.cell!r}")
        cells.get(self.cell)  # ConfigError naming the registered cells
        for name, limit in MODEL_LIMITS.items():
            _positive(f"model.{name}", getattr(self, name))
            _at_most(f"model.{name}", getattr(self, name), limit)
        if not (0.0 <= self.dropout < 1.0):
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")


SAMPLE_CHARS_MAX = 100_000  # samples printed during training are for reading, not keeping


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings."""

    epochs: int = 10
    steps_per_epoch: int | None = None  # cap on steps per epoch (None: one pass over the windows)
    optimizer: str = "rmsprop"
    lr: float = 0.01  # learning rate
    clipnorm: float = 5.0  # gradient norm clipping, as char-rnn (0 disables)
    seed: int | None = None  # None: drawn at start and recorded in config.json
    patience: int | None = None  # stop after this many epochs without a better val loss
    max_minutes: float | None = None  # stop at the last epoch end that fits in this budget
    sample_every: int = 1  # print and save samples every N epochs (0: never)
    sample_chars: int = 200  # characters per sample during training (SAMPLE_CHARS_MAX at most)
    tensorboard: bool = False  # write TensorBoard logs to RUN/tensorboard
    strategy: str = "auto"  # auto | one | mirrored | multiworker (tf.distribute)
    precision: str = "float32"  # or mixed_float16 / mixed_bfloat16 (GPU only)
    backend: str = "tensorflow"  # Keras backend: tensorflow | jax | torch

    def validate(self) -> None:
        _positive("train.epochs", self.epochs)
        _at_most("train.epochs", self.epochs, EPOCHS_MAX)
        if self.patience is not None:
            _positive("train.patience", self.patience)
        if self.max_minutes is not None and not (0 < self.max_minutes < math.inf):
            raise ConfigError(f"train.max_minutes must be a finite number > 0, got "
                              f"{self.max_minutes}")
        if self.sample_every < 0:
            raise ConfigError("train.sample_every must be >= 0")
        _positive("train.sample_chars", self.sample_chars)
        _at_most("train.sample_chars", self.sample_chars, SAMPLE_CHARS_MAX)
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"train.strategy must be one of {', '.join(STRATEGIES)}, "
                              f"got {self.strategy!r}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"train.backend must be one of {', '.join(BACKENDS)}, "
                              f"got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {self.precision!r}")
        if self.steps_per_epoch is not None:
            _positive("train.steps_per_epoch", self.steps_per_epoch)
            _at_most("train.steps_per_epoch", self.steps_per_epoch, INT32_MAX)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"train.lr must be a positive number, got {self.lr}")
        if not (self.clipnorm >= 0 and math.isfinite(self.clipnorm)):
            raise ConfigError(f"train.clipnorm must be >= 0, got {self.clipnorm}")
        if self.seed is not None and not 0 <= self.seed < 2**32:
            raise ConfigError(f"train.seed must be in 0..{2**32 - 1}, got {self.seed}")


@dataclass(frozen=True)
class Config:
    clean: CleanConfig = field(default_factory=CleanConfig)
    tokens: TokenConfig = field(default_factory=TokenConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "Config":
        for section in fields(self):
            getattr(self, section.name).validate()
        return self

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "Config":
        """Build a Config from nested dicts; unknown sections or keys are errors."""
        return merge(cls(), data, source)

    def with_seed(self, seed: int) -> "Config":
        return dataclasses.replace(self, train=dataclasses.replace(self.train, seed=seed))


SECTIONS = {f.name: type(getattr(Config(), f.name)) for f in fields(Config)}
# Every setting's name is unique across sections, so a flag reaches its section by name alone.
SECTION_OF = {key.name: section for section, cls in SECTIONS.items() for key in fields(cls)}
assert len(SECTION_OF) == sum(len(fields(cls)) for cls in SECTIONS.values()), "duplicate keys"


def by_section(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{setting: value} (e.g. command-line flags) -> {section: {setting: value}}; names that
    are not settings (a command's own options) are left out."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if key in SECTION_OF:
            out.setdefault(SECTION_OF[key], {})[key] = value
    return out


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {_shown(value)}")


def _at_most(name: str, value: int | None, limit: int) -> None:
    if value is not None and value > limit:
        raise ConfigError(f"{name} must be at most {limit}, got {_shown(value)}")


def _shown(value: Any) -> str:
    """A value for a message: a crafted integer of 400 digits is not printed whole."""
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text)} characters)"


def merge(base: Config, overrides: dict[str, Any], source: str) -> Config:
    """Return ``base`` with ``overrides`` ({section: {key: value}}) applied; None values are skipped."""
    sections = {}
    for name in (f.name for f in fields(Config)):
        current = getattr(base, name)
        given = overrides.get(name, {}) or {}
        if not isinstance(given, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        known = {f.name: f for f in fields(current)}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) in [{name}]: {', '.join(unknown)} "
                f"(known: {', '.join(known)})"
            )
        changes = {}
        for key, value in given.items():
            if value is None:
                continue
            changes[key] = _coerce(f"{source}: {name}.{key}", value, known[key].type)
        sections[name] = dataclasses.replace(current, **changes)
    unknown_sections = sorted(set(overrides) - set(sections))
    if unknown_sections:
        raise ConfigError(
            f"{source}: unknown section(s) {', '.join(unknown_sections)} "
            f"(known: {', '.join(sections)})"
        )
    try:
        return Config(**sections).validate()
    except ConfigError as e:  # say where the value came from
        raise error_from(source)(f"{source}: {e}") from None


FLAGS_SOURCE = "command line"


class FlagError(ConfigError):
    """A command-line value that no setting accepts: a usage error (exit 2, as Click's own)."""

    exit_code = 2


def error_from(source: str) -> type[ConfigError]:
    return FlagError if source == FLAGS_SOURCE else ConfigError


def _coerce(where: str, value: Any, annotation: str) -> Any:
    """Check a TOML/JSON/flag value against the field's annotation (e.g. "int | None")."""
    kind = annotation.split("|")[0].strip()
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {_shown(value)}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {_shown(value)}")
        try:
            value = float(value)
        except OverflowError:  # an integer of hundreds of digits in a config.json
            raise ConfigError(f"{where} must be a finite number, got {_shown(value)}") from None
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {_shown(value)}")
    elif kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {_shown(value)}")
    return value


def read_limited(path: str | Path, limit: int, error: type[Exception] = ConfigError,
                 then: str = "") -> bytes:
    """The bytes of a small file, read only when it is a regular file of at most ``limit``
    bytes: a FIFO or a device (opened without blocking) and a file over the limit are refused
    before a byte is read, with ``error``: one line naming the file, followed by ``then``.
    FileNotFoundError is left to the caller."""
    import os
    import stat

    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror}){then}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path}: not a regular file{then}")
        if st.st_size > limit:
            raise error(f"{path}: over {limit:,} bytes{then}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(st.st_size + 1)  # read(n) sets n bytes aside first: not the limit
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror}){then}") from None
    finally:
        os.close(fd)
    if len(data) > st.st_size:  # being written in place (textgen replaces files whole)
        raise error(f"{path}: changed while being read{then}")
    return data


CONFIG_MAX_BYTES = 1_000_000  # a config is a short TOML file; anything larger is a mistake


def load_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML config file, reading at most ``CONFIG_MAX_BYTES`` + 1 bytes of it.

    Refused, each with a one-line ConfigError: a missing file, a directory, anything not a
    regular file (``/dev/zero``, a FIFO: opened non-blocking, never read), a file over the cap,
    binary content (a NUL byte), bytes that are not UTF-8 and invalid TOML.
    """
    import os
    import stat

    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; give a TOML config file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file: {e.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{path}: is a directory; give a TOML config file")
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{path}: not a regular file; give a TOML config file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(CONFIG_MAX_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > CONFIG_MAX_BYTES:
        raise ConfigError(f"{path}: over {CONFIG_MAX_BYTES:,} bytes, too large for a config "
                          "file; give a TOML config file")
    nul = data.find(b"\x00")
    if nul != -1:
        raise ConfigError(f"{path}: looks like a binary file (NUL byte at offset {nul}); "
                          "give a TOML config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: byte 0x{data[e.start]:02x} at offset {e.start} is not "
                          "UTF-8; save the config file as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: nested too deeply to read") from None


def preset_path(value: str | Path) -> Path:
    """A config file's path, or a preset's name ("quick") looked up as configs/NAME.toml."""
    path = Path(value)
    if not path.exists() and path.suffix == "" and (Path("configs") / f"{value}.toml").exists():
        return Path("configs") / f"{value}.toml"
    return path


def resolve(config_path: str | Path | None, flags: dict[str, dict[str, Any]],
            base: Config | None = None, source: str = FLAGS_SOURCE) -> Config:
    """Defaults (or ``base``, e.g. a resumed run's config) < TOML file < flags (from
    ``source``: the command line, or a caller of the Python API).

    Flags whose value is None were not given.
    """
    config = base or Config()
    if config_path is not None:
        config = merge(config, load_toml(config_path), str(config_path))
    return merge(config, flags, source)
