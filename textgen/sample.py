"""Weights + prime -> generated text, in NumPy only (never imports TensorFlow or Keras).

The saved network (runs.py describes the weight file) is run one token (character or word) at a
time, carrying each layer's recurrent state, so a new token costs one step, not a re-run of a
window. Several samples are generated together as one batch. A run trained with styles is fed
its style's embedding at every step; word tokens are joined with natural spacing (vocab.py).

Choosing the next character: logits / T -> softmax (p proportional to p^(1/T)); T = 0 is
greedy (argmax). ``top_k`` keeps the K most likely characters, ``top_p`` the smallest set whose
probability reaches P (both applied after temperature). Draws come from one
``numpy.random.Generator`` seeded by ``seed``, so the same seed gives the same text.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import runs
from .config import ModelConfig
from .corpus import clean_chars
from .errors import PrimeError, RunError
from .vocab import Vocab, WordVocab, describe_chars


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # = 1 / (1 + exp(-x)), without overflow warnings


class Network:
    """A forward pass of textgen's model over one time step for a batch."""

    def __init__(self, cfg: ModelConfig, named: dict[str, np.ndarray]):
        self.cell = cfg.cell
        self.units = cfg.units
        try:
            emb = named["embedding/embeddings"].astype(np.float32)
            self.layers = [
                tuple(named[f"rnn_{i}/{w}"].astype(np.float32)
                      for w in ("kernel", "recurrent_kernel", "bias"))
                for i in range(cfg.layers)
            ]
            self.dense_k = named["logits/kernel"].astype(np.float32)
            self.dense_b = named["logits/bias"].astype(np.float32)
        except KeyError as e:
            raise RunError(f"weights file lacks {e.args[0]!r}; it does not match config.json") from None
        self.embedding = emb
        self.vocab_size = emb.shape[0]
        style = named.get("style/embeddings")
        self.style_embedding = None if style is None else style.astype(np.float32)
        self.n_styles = 0 if style is None else style.shape[0]

    def initial_state(self, batch: int) -> list[tuple[np.ndarray, ...]]:
        zeros = lambda: np.zeros((batch, self.units), np.float32)  # noqa: E731
        return [(zeros(), zeros()) if self.cell == "lstm" else (zeros(),) for _ in self.layers]

    def step(self, ids: np.ndarray, state: list,
             style: np.ndarray | int | None = None) -> tuple[np.ndarray, list]:
        """ids (B,) [and style ids (B,) or one for all] -> logits (B, V), new state."""
        x = self.embedding[ids]
        if self.style_embedding is not None:
            if style is None:
                raise RunError("this run was trained with styles; choose one")
            s = self.style_embedding[np.broadcast_to(np.asarray(style), (len(ids),))]
            x = np.concatenate([x, s], axis=1)
        new_state = []
        for (kernel, rec, bias), s in zip(self.layers, state):
            if self.cell == "lstm":
                h, c = s
                z = x @ kernel + h @ rec + bias
                u = self.units
                i, f = _sigmoid(z[:, :u]), _sigmoid(z[:, u : 2 * u])
                g, o = np.tanh(z[:, 2 * u : 3 * u]), _sigmoid(z[:, 3 * u :])
                c = f * c + i * g
                h = o * np.tanh(c)
                new_state.append((h, c))
            elif self.cell == "gru":
                (h,) = s
                u = self.units
                xz = x @ kernel + bias[0]
                hz = h @ rec + bias[1]
                zt = _sigmoid(xz[:, :u] + hz[:, :u])
                r = _sigmoid(xz[:, u : 2 * u] + hz[:, u : 2 * u])
                hh = np.tanh(xz[:, 2 * u :] + r * hz[:, 2 * u :])
                h = zt * h + (1.0 - zt) * hh
                new_state.append((h,))
            else:
                (h,) = s
                h = np.tanh(x @ kernel + h @ rec + bias)
                new_state.append((h,))
            x = h
        return x @ self.dense_k + self.dense_b, new_state


def probabilities(logits: np.ndarray, temperature: float, top_k: int | None = None,
                  top_p: float | None = None) -> np.ndarray:
    """Next-character distribution for each row of ``logits`` (float64, rows sum to 1)."""
    logits = np.asarray(logits, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        z = logits / temperature if temperature > 0 else logits
    if temperature == 0 or np.isnan(z).any() or np.isposinf(z).any():
        # Greedy: asked for (T = 0), or T so small (e.g. subnormal) that dividing by it
        # overflows; the distribution is then a point mass on the likeliest token anyway.
        probs = np.zeros_like(logits)
        probs[np.arange(len(logits)), logits.argmax(axis=1)] = 1.0
        return probs
    if top_k is not None and top_k < z.shape[1]:
        kth = np.partition(z, -top_k, axis=1)[:, -top_k][:, None]
        z = np.where(z >= kth, z, -np.inf)
    z = z - z.max(axis=1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(axis=1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, axis=1, kind="stable")
        sorted_p = np.take_along_axis(probs, order, axis=1)
        before = np.cumsum(sorted_p, axis=1) - sorted_p  # mass of strictly more likely chars
        keep_sorted = before < top_p  # always keeps the most likely character
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=1)
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum(axis=1, keepdims=True)
    return probs


def choose(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row by inverse CDF (one uniform per row, so batches stay reproducible)."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), probs.shape[1] - 1)


@dataclass(frozen=True)
class SampleRequest:
    prime: str | None = None  # None: start from a newline (or the first vocabulary character)
    chars: int | None = None  # characters to generate per sample
    lines: int | None = None  # or: stop after this many generated newlines
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    n: int = 1  # samples generated as one batch
    seed: int | None = None  # None: a fresh random seed (reported in the result)
    stop: str | None = None  # end a sample at this string (kept in the output)
    style: str | None = None  # runs trained with styles: which one to write in


@dataclass(frozen=True)
class Sample:
    text: str  # the generated characters (without the prime)
    prime: str
    seed: int
    index: int  # position in the batch


class Generator:
    """A loaded run folder, ready to generate. Get one with ``textgen.load(run_dir)``."""

    def __init__(self, run: runs.Run):
        self.run = run
        self.vocab: Vocab = run.vocab
        path = run.file(runs.BEST_WEIGHTS)
        if not path.exists():
            raise RunError(f"{run.path}: no weights yet (weights.h5 is written after the first epoch)")
        named = run.read_weights(runs.BEST_WEIGHTS)
        self.network = Network(run.config.model, named)
        if self.network.vocab_size != len(self.vocab):
            raise RunError(f"{path}: weights are for {self.network.vocab_size} characters, "
                           f"vocab.json has {len(self.vocab)}")
        self.weights_hash = runs.weights_digest(named)

    def default_prime(self) -> str:
        return default_prime(self.vocab)

    @property
    def styles(self) -> list[str]:
        return self.run.styles

    def style_id(self, name: str | None) -> int | None:
        """The id of style ``name``; None for a run without styles. Errors name the choices."""
        styles = self.styles
        if not styles:
            if name is not None:
                raise PrimeError(f"{self.run.path}: this run was trained without styles; "
                                 "give no style", cli_hint="drop --style")
            return None
        if name is None:
            raise PrimeError(f"{self.run.path}: this run writes in styles "
                             f"{', '.join(styles)}; choose one", cli_hint="--style NAME")
        if name not in styles:
            raise PrimeError(f"unknown style {name!r}; this run has {', '.join(styles)}")
        return styles.index(name)

    def check_prime(self, prime: str) -> np.ndarray:
        """Prime -> ids, after the run's own normalisation; PrimeError lists unknown chars."""
        if prime == "" or (self.vocab.level == "word" and not self.vocab.encode(prime).size):
            raise PrimeError("the prime text is empty; give at least one "
                             + ("character" if self.vocab.level == "char" else "word"))
        known = self.vocab.tokens if self.vocab.level == "char" else None
        cleaned = clean_chars(prime, self.run.config.clean, known)
        missing = self.vocab.missing(cleaned)
        if missing:
            rare = set(self.run.meta.get("rare_chars", ()))
            note = ("; cleaning dropped these as rare (its minimum character count)"
                    if rare & set(missing) else
                    "; the run's cleaning rules do not map them to known characters")
            raise PrimeError(
                f"prime has characters the model never saw: {describe_chars(missing)}{note}; "
                "remove or replace them"
            )
        return self.vocab.encode(cleaned)

    def random_prime(self, seed: int | None, length: int | None = None) -> str:
        """A slice of the training text starting just after a random space."""
        path = self.run.file(runs.PRIME_TEXT)
        if not path.exists():
            raise RunError(f"{path}: missing, so a random prime is not available for this run")
        text = path.read_text(encoding="utf-8")
        length = length or self.run.config.window.window * (1 if self.vocab.level == "char"
                                                            else 5)
        rng = np.random.default_rng(seed)
        starts = [i + 1 for i, ch in enumerate(text[: max(len(text) - length, 1)]) if ch == " "]
        start = int(rng.choice(starts)) if starts else 0
        return text[start : start + length]

    def generate(self, prime: str | None = None, chars: int | None = None, *,
                 lines: int | None = None, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None,
                 stop: str | None = None) -> str:
        """One sample's text (without the prime)."""
        req = SampleRequest(prime=prime, chars=chars, lines=lines, temperature=temperature,
                            top_k=top_k, top_p=top_p, n=1, seed=seed, stop=stop)
        return self.sample(req)[0].text

    def sample(self, req: SampleRequest, on_text: Callable[[int, str], None] | None = None,
               keep: bool = True) -> list[Sample]:
        """Generate ``req.n`` samples as one batch. ``on_text(i, chars)`` streams new text;
        with ``keep=False`` the samples' text is not kept (constant memory; see
        ``generate_texts``)."""
        validate_request(req)
        style = self.style_id(req.style)
        prime = self.default_prime() if req.prime is None else req.prime
        prime_ids = self.check_prime(prime)
        seed = secrets.randbelow(2**31) if req.seed is None else req.seed
        texts = generate_texts(self.network, self.vocab, prime_ids, req, seed, on_text, style,
                               keep)
        return [Sample(text=t, prime=prime, seed=seed, index=i) for i, t in enumerate(texts)]


def default_prime(vocab: Vocab | WordVocab) -> str:
    """A newline (the document separator) when the vocabulary has one."""
    return "\n" if "\n" in vocab else vocab.tokens[0 if vocab.level == "char" else 1]


def generate_texts(net: Network, vocab: Vocab | WordVocab, prime_ids: np.ndarray,
                   req: SampleRequest, seed: int,
                   on_text: Callable[[int, str], None] | None = None,
                   style: int | None = None, keep: bool = True) -> list[str]:
    """The generation loop: feed the prime, then draw one token per step per sample.

    ``req.chars`` bounds the characters of text produced (word tokens may overshoot by one
    word); ``<unk>`` is never drawn. With ``keep=False`` the text is only passed to
    ``on_text`` and not kept (memory stays constant however long the sample); the returned
    texts are then empty.
    """
    rng = np.random.default_rng(seed)
    n = req.n
    state = net.initial_state(n)
    for i in prime_ids:
        logits, state = net.step(np.full(n, i, dtype=np.int64), state, style)
    track = _Progress(n, vocab, prime_ids, req, keep)
    while not track.done.all():
        if vocab.unk_id is not None:
            logits = logits.copy()
            logits[:, vocab.unk_id] = -np.inf
        ids = choose(probabilities(logits, req.temperature, req.top_k, req.top_p), rng)
        for b in np.flatnonzero(~track.done):
            text = track.add(int(b), int(ids[b]))
            if on_text:
                on_text(int(b), text)
        if not track.done.all():
            logits, state = net.step(ids, state, style)
    if not keep:
        return [""] * n
    return [_cut_at_stop("".join(o), req.stop) for o in track.out]


class _Progress:
    """Each sample's text so far (or only its tail), length and lines, and when it is done."""

    def __init__(self, n: int, vocab, prime_ids, req: SampleRequest, keep: bool):
        self.vocab, self.req, self.keep = vocab, req, keep
        self.limit = req.chars if req.chars is not None else math.inf
        self.out: list[list[str]] = [[] for _ in range(n)]
        self.length = np.zeros(n, dtype=np.int64)
        self.newlines = np.zeros(n, dtype=np.int64)
        self.done = np.zeros(n, dtype=bool)
        last = vocab.tokens[int(prime_ids[-1])] if len(prime_ids) else None
        self.previous: list[str | None] = [last] * n
        self.tail = max(len(req.stop or ""), 1) * 2  # pieces enough to hold the stop string

    def add(self, b: int, token_id: int) -> str:
        token = self.vocab.tokens[token_id]
        text = self.vocab.piece(self.previous[b], token)
        self.previous[b] = token
        out = self.out[b]
        out.append(text)
        if not self.keep and len(out) > self.tail:
            del out[0]
        self.length[b] += len(text)
        req = self.req
        if token == "\n":
            self.newlines[b] += 1
            if req.lines is not None and self.newlines[b] >= req.lines:
                self.done[b] = True
        if self.length[b] >= self.limit:
            self.done[b] = True
        if req.stop and req.stop in "".join(out[-self.tail:]):
            self.done[b] = True
        return text


def _cut_at_stop(text: str, stop: str | None) -> str:
    if stop and stop in text:
        return text[: text.index(stop) + len(stop)]
    return text


def validate_request(req: SampleRequest) -> None:
    """Raise ValueError for values no sampler can honour (the CLI reports them as usage errors)."""
    if req.chars is not None and req.lines is not None:
        raise ValueError("give --chars or --lines, not both")
    if req.chars is None and req.lines is None:
        raise ValueError("give --chars or --lines")
    for name, value in (("chars", req.chars), ("lines", req.lines), ("n", req.n)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    t = req.temperature
    if not isinstance(t, (int, float)) or math.isnan(t) or t < 0 or math.isinf(t):
        raise ValueError(f"temperature must be a finite number >= 0, got {t!r}")
    if req.top_k is not None and req.top_k < 1:
        raise ValueError(f"top-k must be >= 1, got {req.top_k}")
    if req.top_p is not None and not (0.0 < req.top_p <= 1.0):
        raise ValueError(f"top-p must be in (0, 1], got {req.top_p}")
    if req.stop is not None and req.stop == "":
        raise ValueError("stop string must not be empty")


# ----------------------------------------------------------------------------- JSONL records
# One sample per line with everything needed to regenerate it exactly (``--replay``).

RECORD_FIELDS = {"prime": str, "seed": int, "chars": (int, type(None)), "lines": (int, type(None)),
                 "temperature": (int, float), "top_k": (int, type(None)),
                 "top_p": (int, float, type(None)), "n": int, "index": int,
                 "stop": (str, type(None)), "style": (str, type(None)),
                 "weights": (str, type(None)), "run": str, "text": str}


def sample_record(req: SampleRequest, s: Sample, weights_hash: str, run_dir) -> dict:
    return {"text": s.text, "prime": s.prime, "seed": s.seed, "temperature": req.temperature,
            "top_k": req.top_k, "top_p": req.top_p, "chars": req.chars, "lines": req.lines,
            "stop": req.stop, "n": req.n, "index": s.index, "weights": weights_hash,
            "style": req.style, "run": str(run_dir)}


def parse_record(text: str) -> dict:
    """A JSONL sample record, checked field by field; ValueError says what is wrong."""
    import json

    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("not a JSON record") from None
    if not isinstance(record, dict) or "seed" not in record or "prime" not in record:
        raise ValueError("record lacks seed/prime; give a line written by --format jsonl")
    for key, kinds in RECORD_FIELDS.items():
        if key not in record:
            continue
        value = record[key]
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise ValueError(f"record field {key!r} has the wrong type ({type(value).__name__})")
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"record field {key!r} is not valid Unicode") from None
    return record


def request_from_record(record: dict, weights_hash: str) -> SampleRequest:
    """The request that made ``record``; RunError if other weights made it."""
    if record.get("weights") not in (None, weights_hash):
        raise RunError(f"record was made with weights {record['weights']}, this run has "
                       f"{weights_hash}; sample from the run that made it",
                       cli_hint="pass --run with that run folder")
    return SampleRequest(prime=record["prime"], chars=record.get("chars"),
                         lines=record.get("lines"), temperature=record.get("temperature", 1.0),
                         top_k=record.get("top_k"), top_p=record.get("top_p"),
                         n=record.get("n", 1), seed=record["seed"], stop=record.get("stop"),
                         style=record.get("style"))


def load(run_dir: str | Path = runs.DEFAULT_ROOT / runs.LATEST) -> Generator:
    """Open a run folder for generation (NumPy only; no TensorFlow import)."""
    return Generator(runs.open_run(run_dir))
