"""The sampling settings, declared once, and the rules that turn logits into the next token.

``SampleRequest`` is the one declaration of the sampling fields: each field's type, range,
default and help are its ``Setting`` (the field's metadata). The command line's options (cli.py),
the JSONL record's fields (``record``/``parse_record`` here), the exported page's query
parameters and form (export.py hands ``page_fields()`` to the page) and the server's request
fields (serve.py) are all made from it, and a request is validated once, when it is made: a
bad value raises ``SamplingError`` naming the field, which each surface reports in its own terms
(a usage error naming the flag, a 400 naming the parameter, the page's error line).

The rules that shape the next-token distribution are an ordered chain of small processors,
``PROCESSORS``: temperature (T = 0, or a T so small that 1/T overflows, is greedy), top-k,
top-p, then min-p. Each reads one field of the request, per row (rows of one batch may come
from different requests), and masks or rescales the logits; ``probabilities`` runs the chain and a
softmax. The exported page's JavaScript mirrors each processor (export_page.html's
``PROCESSORS``); tests/test_export.py checks the two agree, processor by processor.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import numpy as np

from .errors import TextgenError

CHARS_MAX = 10**9  # characters per sample (the command line streams them in constant memory)
PAGE_CHARS_MAX = 100_000  # the exported page: about 5 s of generation in a browser
N_MAX = 1000  # samples per request, generated as one batch
HELD_MAX = 100_000_000  # characters a batch of several samples may hold in memory
STOPS_MAX = 4  # stop strings per request (as OpenAI's completions API)
SEED_MAX = 2**32 - 1


class SamplingError(TextgenError):
    """A sampling setting no sampler can honour; ``field`` names it (a SampleRequest field)."""

    exit_code = 2  # a usage error on the command line

    def __init__(self, name: str, message: str, cli_hint: str | None = None):
        super().__init__(message, cli_hint)
        self.field = name


@dataclass(frozen=True)
class Setting:
    """How one sampling field looks on every surface, and what values it takes."""

    help: str
    kind: type  # int, float or str (a tuple of str for ``many`` > 1)
    minimum: float | None = None
    maximum: float | None = None
    above: bool = False  # the minimum itself is excluded
    many: int = 1  # up to this many values (stop strings)
    cli: str | None = None  # the command-line option; None: not on the command line
    page: str | None = None  # the page's form label; None: not on the page's form
    page_maximum: float | None = None  # a lower maximum on the page
    quick: tuple = ()  # quick picks beside the page's field
    server: str | None = None  # the OpenAI completions field; None: not a server field

    def describe_range(self) -> str:
        def show(x):
            return f"{x:,}" if self.kind is int else f"{x:g}"

        low = "" if self.minimum is None else f"{'>' if self.above else '>='} {show(self.minimum)}"
        high = "" if self.maximum is None else f"<= {show(self.maximum)}"
        return " and ".join(part for part in (low, high) if part)


def _field(default: Any, setting: Setting):
    return field(default=default, metadata={"setting": setting})


@dataclass(frozen=True)
class SampleRequest:
    """What to generate: the one declaration of the sampling settings (see the module's
    docstring). Without ``chars``, ``lines`` or ``tokens`` a sample is 500 characters long."""

    prime: str | None = _field(None, Setting(
        "text to start from (the output starts with it); none: a new line", str,
        cli="--prime", page="Prime text", server="prompt"))
    chars: int | None = _field(None, Setting(
        "characters per sample [500]", int, 1, CHARS_MAX, cli="--chars", page="Length "
        "(characters)", page_maximum=PAGE_CHARS_MAX))
    lines: int | None = _field(None, Setting(
        "or: generated lines per sample", int, 1, CHARS_MAX, cli="--lines"))
    tokens: int | None = _field(None, Setting(
        "or: tokens per sample (characters, or words for word-level runs)", int, 1, CHARS_MAX,
        server="max_tokens"))
    temperature: float = _field(1.0, Setting(
        "sampling temperature T: p is proportional to p^(1/T); 0 = greedy", float, 0, None,
        cli="--temperature",
        page="Temperature", quick=(0.2, 0.5, 1.0), server="temperature"))
    top_k: int | None = _field(None, Setting(
        "sample only from the K likeliest tokens", int, 1, None, cli="--top-k",
        page="Top-k (empty: off)", server="top_k"))
    top_p: float | None = _field(None, Setting(
        "sample only from the smallest set of tokens with probability P", float, 0, 1,
        above=True, cli="--top-p", page="Top-p (empty: off)", server="top_p"))
    min_p: float | None = _field(None, Setting(
        "drop tokens less likely than P times the likeliest token", float, 0, 1,
        cli="--min-p", page="Min-p (empty: off)", server="min_p"))
    n: int = _field(1, Setting(
        "samples, generated as one batch", int, 1, N_MAX, cli="--n", server="n"))
    seed: int | None = _field(None, Setting(
        "random seed; same seed, same text [drawn]", int, 0, SEED_MAX, cli="--seed",
        page="Seed (empty: random)", server="seed"))
    stop: tuple[str, ...] | None = _field(None, Setting(
        "end a sample at this string (kept in the output)", str,
        many=STOPS_MAX, cli="--stop", server="stop"))
    style: str | None = _field(None, Setting(
        "runs trained with styles: the style to write in", str, cli="--style", page="Style",
        server="style"))

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.default is not MISSING:  # None: the default (1.0, 1...)
                value = f.default
            object.__setattr__(self, f.name, check(f.name, value))
        limits = [name for name in ("chars", "lines", "tokens") if getattr(self, name) is not None]
        if len(limits) > 1:
            raise SamplingError(limits[1], f"give one length: {' or '.join(limits)}, not both")
        if not limits:
            object.__setattr__(self, "chars", 500)
        held = (self.chars or self.tokens or 0) * self.n
        if self.n > 1 and held > HELD_MAX:
            raise SamplingError("n", f"{self.n} samples of {self.chars or self.tokens:,} would "
                                f"hold {held:,} characters in memory (at most {HELD_MAX:,}); "
                                "generate fewer or shorter samples, or one at a time")


SETTINGS: dict[str, Setting] = {f.name: f.metadata["setting"] for f in fields(SampleRequest)}


def request(**settings: Any) -> SampleRequest:
    """A SampleRequest from keyword settings; an unknown name is a SamplingError naming the
    settings there are (not a TypeError)."""
    unknown = [name for name in settings if name not in SETTINGS]
    if unknown:
        raise SamplingError(unknown[0], f"no sampling setting {unknown[0]!r}; the settings are "
                            f"{', '.join(SETTINGS)}")
    return SampleRequest(**settings)
DEFAULTS: dict[str, Any] = {f.name: (None if f.default is MISSING else f.default)
                            for f in fields(SampleRequest)}


def check(name: str, value: Any) -> Any:
    """``value`` for field ``name``, checked against its Setting (ints stay ints, numbers become
    floats for float fields, one string becomes a tuple for ``many``); SamplingError if not."""
    setting = SETTINGS[name]
    if value is None:
        return None
    if setting.many > 1:
        values = (value,) if isinstance(value, str) else value
        if not isinstance(values, (list, tuple)) or not values:
            raise SamplingError(name, f"{name} must be a string or a list of strings")
        if len(values) > setting.many:
            raise SamplingError(name, f"give at most {setting.many} {name} strings, got "
                                f"{len(values)}")
        return tuple(_check_one(name, setting, v) for v in values)
    return _check_one(name, setting, value)


def _check_one(name: str, setting: Setting, value: Any) -> Any:
    kind = setting.kind
    if kind is str:
        if not isinstance(value, str):
            raise SamplingError(name, f"{name} must be a string, got {value!r}")
        if setting.many > 1 and value == "":
            raise SamplingError(name, f"{name} string must not be empty")
        return value
    whole = isinstance(value, int) and not isinstance(value, bool)
    if kind is int and not whole:
        raise SamplingError(name, f"{name} must be an integer, got {value!r}")
    if kind is float:
        if not (whole or isinstance(value, float)):
            raise SamplingError(name, f"{name} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise SamplingError(name, f"{name} must be a finite number, got {value!r}")
    low, high = setting.minimum, setting.maximum
    if (low is not None and (value <= low if setting.above else value < low)) or (
            high is not None and value > high):
        raise SamplingError(name, f"{name} must be {setting.describe_range()}, got {value!r}")
    return value


def cli_fields() -> dict[str, Setting]:
    return {name: s for name, s in SETTINGS.items() if s.cli}


def server_fields() -> dict[str, str]:
    """{OpenAI request field: SampleRequest field}."""
    return {s.server: name for name, s in SETTINGS.items() if s.server}


def page_fields() -> list[dict[str, Any]]:
    """The page's form and query parameters, as JSON for its JavaScript."""
    out = []
    for name, s in SETTINGS.items():
        if s.page is None:
            continue
        maximum = s.page_maximum if s.page_maximum is not None else s.maximum
        out.append({"name": name, "label": s.page, "help": s.help,
                    "kind": {int: "int", float: "float", str: "str"}[s.kind],
                    "min": s.minimum, "max": maximum, "above": s.above,
                    "default": DEFAULTS[name] if name != "chars" else 500,
                    "quick": list(s.quick)})
    return out


# ----------------------------------------------------------------------------- processors
# Each processor rescales or masks logits, row by row, from one field of each row's request:
# ``rows(values)`` says which rows it changes (values: one float per row, NaN for "off"), and
# ``apply(z, values, rows)`` changes them. The exported page mirrors each one in JavaScript
# (export_page.html's PROCESSORS).


def greedy_rows(temperature: np.ndarray) -> np.ndarray:
    """Rows sampled greedily: T = 0, or T so small that 1/T overflows (T < about 5.6e-309):
    the distribution is then a point mass on the likeliest token anyway."""
    with np.errstate(divide="ignore", over="ignore"):
        return ~np.isfinite(1.0 / temperature)


def _softmax(z: np.ndarray) -> np.ndarray:
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def _mask(z: np.ndarray, rows: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``z`` with the tokens of ``rows`` that ``keep`` (one row of it per such row) leaves out
    set to -inf."""
    z = z.copy()
    z[rows] = np.where(keep, z[rows], -np.inf)
    return z


class Temperature:
    field = "temperature"

    @staticmethod
    def rows(t: np.ndarray) -> np.ndarray:
        return ~greedy_rows(t)

    @staticmethod
    def apply(z: np.ndarray, t: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(z - max) / T: the likeliest token stays at 0, so even a tiny T cannot overflow to
        +inf or make NaN (greedy rows are left as they are; ``probabilities`` makes them)."""
        scale = np.where(rows, t, 1.0)[:, None]
        return (z - z.max(axis=1, keepdims=True)) / scale


class TopK:
    field = "top_k"

    @staticmethod
    def rows(k: np.ndarray) -> np.ndarray:
        return ~np.isnan(k) & (k >= 1)

    @staticmethod
    def apply(z: np.ndarray, k: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Keep each row's K likeliest tokens (ties with the K-th kept)."""
        k = np.minimum(k[rows], z.shape[1]).astype(np.int64)
        kth = -np.sort(-z[rows], axis=1)[np.arange(len(k)), k - 1]
        return _mask(z, rows, z[rows] >= kth[:, None])


class TopP:
    field = "top_p"

    @staticmethod
    def rows(top_p: np.ndarray) -> np.ndarray:
        return ~np.isnan(top_p) & (top_p < 1.0)

    @staticmethod
    def apply(z: np.ndarray, top_p: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Keep the smallest set of likeliest tokens whose probability reaches P (the likeliest
        token always)."""
        probs = _softmax(z[rows])
        order = np.argsort(-probs, axis=1, kind="stable")
        sorted_p = np.take_along_axis(probs, order, axis=1)
        before = np.cumsum(sorted_p, axis=1) - sorted_p  # mass of strictly likelier tokens
        keep = np.zeros_like(probs, dtype=bool)
        np.put_along_axis(keep, order, before < top_p[rows][:, None], axis=1)
        return _mask(z, rows, keep)


class MinP:
    field = "min_p"

    @staticmethod
    def rows(min_p: np.ndarray) -> np.ndarray:
        return ~np.isnan(min_p) & (min_p > 0)

    @staticmethod
    def apply(z: np.ndarray, min_p: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Drop the tokens whose probability is below P times the likeliest token's (z holds
        log-probabilities up to a constant, so that is z < max z + log P)."""
        floor = z[rows].max(axis=1, keepdims=True) + np.log(min_p[rows])[:, None]
        return _mask(z, rows, z[rows] >= floor)


PROCESSORS = (Temperature, TopK, TopP, MinP)


class RowSettings:
    """Every row's value of each processor's field (NaN: off), which rows each processor
    changes and which rows are greedy: worked out once for a batch's rows (sample.Batch
    keeps one until its requests change), not at every step."""

    def __init__(self, values: dict[str, np.ndarray]):
        self.values = values
        self.greedy = greedy_rows(values["temperature"])
        self.rows = {p.field: p.rows(values[p.field]) for p in PROCESSORS}
        self.used = [p for p in PROCESSORS if self.rows[p.field].any()]

    @classmethod
    def of(cls, n: int, **settings) -> "RowSettings":
        """From each field's value (one for every row, or a sequence of one per row; None:
        off); missing fields are off (temperature: 1)."""
        settings.setdefault("temperature", 1.0)
        return cls({p.field: _per_row(settings.get(p.field), n) for p in PROCESSORS})


def _per_row(value, rows: int) -> np.ndarray:
    """One float per row: a scalar broadcast, a per-row sequence as it is; None -> NaN."""
    if value is None or np.isscalar(value):
        return np.full(rows, np.nan if value is None else float(value))
    return np.array([np.nan if v is None else float(v) for v in value], dtype=np.float64)


def distribution(logits: np.ndarray, settings: RowSettings) -> np.ndarray:
    """Next-token distribution of each row of ``logits`` (float64, rows sum to 1): the
    processors in order, then a softmax; greedy rows are a point mass on their likeliest."""
    z = np.asarray(logits, dtype=np.float64)
    for processor in settings.used:
        z = processor.apply(z, settings.values[processor.field], settings.rows[processor.field])
    probs = _softmax(z)
    greedy = settings.greedy
    if greedy.any():
        probs[greedy] = 0.0
        probs[greedy, np.asarray(logits)[greedy].argmax(axis=1)] = 1.0
    return probs


def probabilities(logits: np.ndarray, temperature=1.0, top_k=None, top_p=None,
                  **settings) -> np.ndarray:
    """Next-token distribution for each row of ``logits``; each setting (a processor's field)
    is one value for every row, or a sequence with one value per row (None: off)."""
    return distribution(logits, RowSettings.of(len(logits), temperature=temperature,
                                               top_k=top_k, top_p=top_p, **settings))


def choose(probs: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """One draw per row by inverse CDF, from one uniform in [0, 1) per row."""
    cdf = np.cumsum(probs, axis=1)
    u = np.asarray(uniforms)[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), probs.shape[1] - 1)


# ----------------------------------------------------------------------------- JSONL records
# One sample per line with everything needed to regenerate it exactly (``--replay``): the
# request's fields, plus the sample's text, index in its batch, the weights' hash and the run.

RECORD_EXTRA = {"text": str, "index": int, "weights": (str, type(None)), "run": str}


def record(req: SampleRequest, text: str, prime: str, seed: int, index: int, weights: str,
           run: str) -> dict:
    out = {"text": text}
    for name in SETTINGS:
        value = getattr(req, name)
        out[name] = list(value) if isinstance(value, tuple) else value
    out.update(prime=prime, seed=seed, index=index, weights=weights, run=str(run))
    return out


def parse_record(text: str) -> dict:
    """A JSONL sample record, checked field by field (by the declaration, so a record can hold
    nothing a request would refuse); ValueError says what is wrong."""
    import json

    try:
        rec = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("not a JSON record") from None
    if not isinstance(rec, dict) or "seed" not in rec or "prime" not in rec:
        raise ValueError("record lacks seed/prime; give a line written by --format jsonl")
    for key, kinds in RECORD_EXTRA.items():
        if key in rec and (not isinstance(rec[key], kinds) or isinstance(rec[key], bool)):
            raise ValueError(f"record field {key!r} has the wrong type "
                             f"({type(rec[key]).__name__})")
    for key, value in rec.items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"record field {key!r} is not valid Unicode") from None
    try:
        request_of(rec)
    except SamplingError as e:
        raise ValueError(f"record field {e.field!r}: {e}") from None
    return rec


def request_of(rec: dict) -> SampleRequest:
    """The request a record was made with (its declared fields; others are ignored)."""
    return SampleRequest(**{name: rec[name] for name in SETTINGS if name in rec})
