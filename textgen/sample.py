"""Weights + prime -> generated text, in NumPy only (never imports TensorFlow or Keras).

The saved network (runs.py describes the weight file) is run one token (character or word) at a
time, carrying each layer's recurrent state, so a new token costs one step, not a re-run of a
window. A run trained with styles is fed its style's embedding at every step; word tokens are
joined with natural spacing (vocab.py).

Requests (sampling.SampleRequest) are generated in a ``Batch``: every step feeds each row its
next prime token or its last drawn token, and draws the next token of every row whose prime is
fed, by the processors of sampling.py; a request joins the running batch at the next step and
leaves it when its samples are done (continuous batching: textgen serve steps concurrent
requests together). A request's draws come from its own ``numpy.random.Generator`` seeded by its
``seed``, one uniform per sample per step, and every matrix product computes a row the same way
whatever else the batch holds (``rowwise_matmul``), so the same seed gives the same text alone,
with ``--n``, or beside other requests.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import cells, runs
from .config import ModelConfig
from .corpus import clean_chars
from .errors import PrimeError, RunError, check_signalled
from .sampling import (PROCESSORS, RowSettings, SampleRequest, SamplingError, choose,
                       distribution, request)
from .vocab import Vocab, WordVocab, describe_chars


def rowwise_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` computed one row at a time (a matrix-vector product per row).

    BLAS rounds a row of a matrix product differently depending on how many rows it is given
    (a block of 1 row, of 5 or of 8 goes through different kernels). One row per product, the
    same kernel for every row, and a sample's text does not depend on how many samples are
    generated beside it (``--n``, the server's batches). On small models it costs no more
    than blocks of rows: measured with OpenBLAS on 2 cores, a 128 x 512 product took 11 us for
    one row against 47 us for a padded block of 8, and about 5 us a row at 32 rows either way."""
    return np.matmul(a[:, None, :], b)[:, 0]


class Network:
    """A forward pass of textgen's model over one time step for a batch (cells.py holds each
    cell's step)."""

    def __init__(self, cfg: ModelConfig, named: dict[str, np.ndarray]):
        self.cell = cells.get(cfg.cell)
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
        return [tuple(np.zeros((batch, self.units), np.float32) for _ in range(self.cell.states))
                for _ in self.layers]

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
            s = self.cell.numpy_step(x, s, kernel, rec, bias, self.units, rowwise_matmul)
            new_state.append(s)
            x = s[0]
        return rowwise_matmul(x, self.dense_k) + self.dense_b, new_state


@dataclass(frozen=True)
class Sample:
    """One generated sample: its ``text`` (without the prime), the ``prime`` it started from,
    the ``seed`` of its request, its ``index`` in the request's batch of n, and why it ended
    (``finish_reason``: "stop" at a stop string, "length" at its length)."""

    text: str  # the generated text (without the prime)
    prime: str
    seed: int
    index: int  # position in the request's batch of n samples
    finish_reason: str = "length"  # "stop": a stop string ended it; "length": its length did


class Generator:
    """A loaded run folder, ready to generate (NumPy only). Get one with
    ``textgen.load(run_dir)`` or ``Run.generator()``. ``run``: the run folder read back;
    ``vocab``: its vocabulary; ``network``: the NumPy network; ``weights_hash``: a short hash of
    the weights (JSONL records carry it)."""

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
        """What a sample starts from without a prime: a new line when the vocabulary has one."""
        return default_prime(self.vocab)

    @property
    def styles(self) -> list[str]:
        """The run's style names (empty for a run trained without styles)."""
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
        ids = self.vocab.encode(cleaned)
        if not ids.size:  # only characters the run's cleaning drops (a byte-order mark)
            raise PrimeError("the prime text is empty once cleaned as the run's "
                             "text was; give at least one character the model knows")
        return ids

    def random_prime(self, seed: int | None, length: int | None = None) -> str:
        """A slice of the training text starting just after a random space."""
        path = self.run.file(runs.PRIME_TEXT)
        if not path.exists():
            raise RunError(f"{path}: missing, so a random prime is not available for this run")
        try:  # at most runs.MAX_BYTES of it, a regular file
            text = runs.read_bytes(path).decode("utf-8")
        except UnicodeDecodeError:
            raise RunError(f"{path}: not UTF-8 text; the run folder is damaged") from None
        length = length or self.run.config.window.window * (1 if self.vocab.level == "char"
                                                            else 5)
        rng = np.random.default_rng(seed)
        starts = [i + 1 for i, ch in enumerate(text[: max(len(text) - length, 1)]) if ch == " "]
        start = int(rng.choice(starts)) if starts else 0
        return text[start : start + length]


    def job(self, req: SampleRequest, keep: bool = True) -> "Job":
        """``req`` checked against this model (style, prime, lines), ready to join a Batch."""
        if req.lines is not None and "\n" not in self.vocab:
            raise SamplingError("lines", "this model never writes a newline (its vocabulary "
                                "has none), so a sample of lines would never end; give a length "
                                "in characters instead", cli_hint="--chars")
        style = self.style_id(req.style)
        prime = self.default_prime() if req.prime is None else req.prime
        prime_ids = self.check_prime(prime)
        seed = secrets.randbelow(2**31) if req.seed is None else req.seed
        return Job(req, prime, prime_ids, seed, style, self.vocab, keep)

    def sample(self, req: SampleRequest, on_text: Callable[[int, str], None] | None = None,
               keep: bool = True) -> list[Sample]:
        """Generate ``req.n`` samples as one batch. ``on_text(i, text)`` streams each sample's
        new text; with ``keep=False`` the samples' text is not kept (constant memory however
        long the samples: their ``text`` is then empty)."""
        return self.complete(self.job(req, keep), on_text)

    def complete(self, job: "Job", on_text: Callable[[int, str], None] | None = None
                 ) -> list[Sample]:
        """Generate a Job made by ``job`` (checked already: nothing can be refused any more)
        in a batch of its own; ``on_text`` as in ``sample``."""
        for row, text in run_alone(self.network, self.vocab, job):
            if on_text:
                on_text(row, text)
        return job.samples()

    def generate(self, prime: str | None = None, chars: int | None = None,
                 **settings) -> str | list[str]:
        """One sample's text (without the prime), or a list of ``n`` texts when ``n`` > 1.
        ``settings``: any field of SampleRequest by name (``temperature=0.5, top_p=0.9,
        n=3, seed=1``...; None means its default); 500 characters without a length."""
        req = request(prime=prime, chars=chars, **settings)
        texts = [s.text for s in self.sample(req)]
        return texts[0] if req.n == 1 else texts

    def stream(self, prime: str | None = None, chars: int | None = None,
               **settings) -> Iterator[str]:
        """The text of one sample as it is generated, a piece (a token) at a time; the
        settings are ``generate``'s (n must be 1)."""
        req = request(prime=prime, chars=chars, **settings)
        if req.n != 1:
            raise SamplingError("n", "stream one sample at a time (n = 1)")
        for _, text in run_alone(self.network, self.vocab, self.job(req, keep=False)):
            yield text


def default_prime(vocab: Vocab | WordVocab) -> str:
    """A newline (the document separator) when the vocabulary has one."""
    return "\n" if "\n" in vocab else vocab.tokens[0 if vocab.level == "char" else 1]


class Job:
    """One request in a Batch: its prime, random generator, rows' progress and results."""

    def __init__(self, req: SampleRequest, prime: str, prime_ids: np.ndarray, seed: int,
                 style: int | None, vocab, keep: bool = True):
        self.req, self.prime, self.prime_ids = req, prime, np.asarray(prime_ids)
        self.n = req.n  # rows (samples)
        self.seed, self.style = seed, style
        self.rng = np.random.default_rng(seed)
        self._uniforms, self._used = np.zeros(0), 0  # drawn ahead from rng, in its order
        self.fed = 0  # prime tokens fed so far
        self.progress = _Progress(req.n, vocab, self.prime_ids, req, keep)
        self.cancelled = False

    @property
    def finished(self) -> bool:
        return self.cancelled or self.progress.remaining == 0

    def uniforms(self) -> np.ndarray:
        """The next ``n`` uniforms of this request's generator (one per sample), drawn from it
        ahead in blocks: the same numbers in the same order as one call per step."""
        if self._used == len(self._uniforms):
            self._uniforms, self._used = self.rng.random(self.n * max(1, 1024 // self.n)), 0
        self._used += self.n
        return self._uniforms[self._used - self.n : self._used]

    def cancel(self) -> None:
        """Leave the batch at the next step (e.g. the client went away)."""
        self.cancelled = True

    def samples(self) -> list[Sample]:
        p = self.progress
        return [Sample(text=p.text(b), prime=self.prime, seed=self.seed, index=b,
                       finish_reason="stop" if p.stopped[b] else "length")
                for b in range(self.n)]


class Batch:
    """Requests stepped together: each step runs the network once over every row of every
    request, then draws the next token of each row whose prime is fed. ``add`` a Job at any
    time; it joins at the next step. A Job leaves when all its rows are done (or it is
    cancelled)."""

    def __init__(self, network: Network, vocab: Vocab | WordVocab):
        self.network, self.vocab = network, vocab
        self.jobs: list[Job] = []
        self.state = network.initial_state(0)
        self.ids = np.zeros(0, np.int64)
        self.styles: np.ndarray | None = None
        self._settings = RowSettings.of(0)
        self._slices: list[tuple[Job, slice]] = []  # each job's rows
        self._feeding = False  # some job is still being fed its prime

    @property
    def rows(self) -> int:
        return len(self.ids)

    def add(self, job: Job) -> None:
        self.jobs.append(job)
        fresh = self.network.initial_state(job.n)
        self.state = [tuple(np.concatenate([a, b]) for a, b in zip(old, new))
                      for old, new in zip(self.state, fresh)]
        self.ids = np.concatenate([self.ids, np.full(job.n, job.prime_ids[0], np.int64)])
        self._rows_changed()

    def _rows_changed(self) -> None:
        """Per-row style ids and sampling settings, rebuilt when requests join or leave."""
        styled = self.network.style_embedding is not None
        self.styles = (np.concatenate([np.full(j.n, j.style, np.int64) for j in self.jobs])
                       if styled and self.jobs else None)
        self._settings = RowSettings.of(self.rows, **{
            p.field: [getattr(j.req, p.field) for j in self.jobs for _ in range(j.n)]
            for p in PROCESSORS})
        ends = np.cumsum([j.n for j in self.jobs]).tolist()
        self._slices = [(j, slice(end - j.n, end)) for j, end in zip(self.jobs, ends)]
        self._feeding = any(j.fed < len(j.prime_ids) for j in self.jobs)

    def _remove(self, gone: list[Job]) -> None:
        keep = np.concatenate([np.full(j.n, j not in gone) for j in self.jobs])
        self.jobs = [j for j in self.jobs if j not in gone]
        self.state = [tuple(a[keep] for a in layer) for layer in self.state]
        self.ids = self.ids[keep]
        self._rows_changed()

    def step(self) -> list[tuple[Job, int, str]]:
        """One token for every row: [(job, row, new text)] for the rows that drew one. Jobs
        that are finished (or cancelled) leave first."""
        gone = [j for j in self.jobs if j.finished]
        if gone:
            self._remove(gone)
        if not self.jobs:
            return []
        logits, self.state = self.network.step(self.ids, self.state, self.styles)
        return self._draw(logits, self._feed() if self._feeding else set())

    def _feed(self) -> set[int]:
        """Count one more prime token fed to each job; the ids of the jobs still being fed."""
        feeding = set()
        for job, _ in self._slices:
            job.fed = min(job.fed + 1, len(job.prime_ids))
            if job.fed < len(job.prime_ids):
                feeding.add(id(job))
        self._feeding = bool(feeding)
        return feeding

    def _draw(self, logits: np.ndarray, feeding: set[int]) -> list[tuple[Job, int, str]]:
        """Draw a token for every row; a row still being fed its prime gets its next prime
        token instead (its draw, made with a zero and not from its generator, is dropped: one
        distribution over the whole batch is cheaper than picking the drawing rows out)."""
        z = logits
        if self.vocab.unk_id is not None:  # <unk> stands for many words: never drawn
            z = z.copy()
            z[:, self.vocab.unk_id] = -np.inf
        uniforms = [np.zeros(job.n) if id(job) in feeding else job.uniforms()
                    for job, _ in self._slices]
        ids = choose(distribution(z, self._settings),
                     uniforms[0] if len(uniforms) == 1 else np.concatenate(uniforms))
        self.ids[:] = ids
        events, tokens = [], ids.tolist()
        for job, rows in self._slices:
            if id(job) in feeding:
                self.ids[rows] = job.prime_ids[job.fed]
                continue
            progress = job.progress
            for b in range(job.n):
                if not progress.done[b]:
                    events.append((job, b, progress.add(b, tokens[rows.start + b])))
        return events


def run_alone(net: Network, vocab, job: Job) -> Iterator[tuple[int, str]]:
    """Generate one job in a batch of its own: (row, new text) as each token is drawn."""
    batch = Batch(net, vocab)
    batch.add(job)
    while not job.finished:
        check_signalled()  # a signal whose first raise a library swallowed stops it here
        for _, row, text in batch.step():
            yield row, text


def generate_texts(net: Network, vocab: Vocab | WordVocab, prime_ids: np.ndarray,
                   req: SampleRequest, seed: int, style: int | None = None) -> list[str]:
    """The texts of ``req`` from ``net`` after ``prime_ids`` (for samples taken during
    training, from weights not yet in a run folder)."""
    job = Job(req, "", prime_ids, seed, style, vocab)
    for _ in run_alone(net, vocab, job):
        pass
    return [s.text for s in job.samples()]


class _Progress:
    """Each sample's text so far (or only its tail), length, tokens and lines, and when it is
    done: at its length (characters, tokens or lines) or at a stop string."""

    def __init__(self, n: int, vocab, prime_ids, req: SampleRequest, keep: bool):
        self.vocab, self.req, self.keep = vocab, req, keep
        self.limit = req.chars if req.chars is not None else math.inf
        self.out: list[list[str]] = [[] for _ in range(n)]
        self.length = [0] * n
        self.tokens = [0] * n
        self.newlines = [0] * n
        self.done = [False] * n
        self.stopped = [False] * n
        self.remaining = n  # rows not done
        last = vocab.tokens[int(prime_ids[-1])] if len(prime_ids) else None
        self.previous: list[str | None] = [last] * n
        self.stops = req.stop or ()
        self.tail = max((len(s) for s in self.stops), default=1) * 2  # pieces to hold a stop
        self.max_tokens = req.tokens or math.inf
        self.max_lines = req.lines if req.lines is not None else math.inf

    def add(self, b: int, token_id: int) -> str:
        token = self.vocab.tokens[token_id]
        text = self.vocab.piece(self.previous[b], token)
        self.previous[b] = token
        out = self.out[b]
        out.append(text)
        if not self.keep and len(out) > self.tail:
            del out[0]
        self.length[b] += len(text)
        self.tokens[b] += 1
        done = self.length[b] >= self.limit or self.tokens[b] >= self.max_tokens
        if token == "\n":
            self.newlines[b] += 1
            done = done or self.newlines[b] >= self.max_lines
        if self.stops:
            recent = "".join(out[-self.tail:])
            if any(s in recent for s in self.stops):
                done = self.stopped[b] = True
        if done:
            self.done[b] = True
            self.remaining -= 1
        return text

    def text(self, b: int) -> str:
        return cut_at_stop("".join(self.out[b]), self.stops) if self.keep else ""


def cut_at_stop(text: str, stops) -> str:
    """``text`` up to and including the first stop string it holds (the earliest to end)."""
    ends = [text.index(s) + len(s) for s in stops if s in text]
    return text[: min(ends)] if ends else text


def load(run_dir: str | Path = "checkpoints/latest") -> Generator:
    """Open a run folder (default checkpoints/latest) for generation (NumPy only; no framework
    is imported)."""
    return Generator(runs.open_run(run_dir))
