"""Starting a new run from a trained one (``--init-from``): the base run, its shape, and its
weights carried over token by token (NumPy only).

The new run's model has the base's shape (cell, layers, units, embedding and style sizes;
anything else that would change a weight's shape is refused with the list of differences).
Its vocabulary is the union of the base's and the new corpus's tokens: tokens both know keep
the base's learned rows (embedding row, output column and bias), tokens only the new corpus has
get a new model's fresh rows, and base tokens the new corpus lacks keep theirs. Styles are
matched by name the same way. All recurrent weights are the base's. The optimizer starts fresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import runs
from .config import Config, ModelConfig
from .errors import RunError

SHAPE_KEYS = ("cell", "layers", "units", "embedding_dim", "style_dim")


@dataclass(frozen=True)
class Base:
    """A trained run to start from: its folder, weights file and checked weights."""

    run: runs.Run
    weights: Path
    named: dict[str, np.ndarray]

    @property
    def weights_hash(self) -> str:
        return runs.weights_digest(self.named)


def open_base(path: str | Path) -> Base:
    """A run folder (its best weights) or a weights file with the run's config beside it."""
    path = Path(path)
    if path.is_file():
        folder, name = path.parent, path.name
    elif path.is_dir():
        folder, name = path, runs.BEST_WEIGHTS
    else:
        raise RunError(f"{path}: no such run folder or weights file to start from")
    if not runs.is_run(folder):
        raise RunError(f"{path}: not a textgen run (no config.json beside the weights); start "
                       "from a run folder or its weights.h5")
    run = runs.open_run(folder)
    if not run.file(name).exists():
        raise RunError(f"{run.file(name)}: missing; the run has no best weights yet "
                       "(they are written after its first epoch)")
    return Base(run, run.file(name), run.read_weights(name))


def base_config(base: Base) -> Config:
    """What a new run starts from before its config file and flags: the base's model and
    token level, everything else the defaults."""
    from dataclasses import replace

    default = Config()
    return replace(default, model=base.run.config.model,
                   tokens=replace(default.tokens, level=base.run.config.tokens.level))


def check_shape(base: Base, config: Config) -> None:
    """Refuse settings that would change the base model's shape or token level."""
    old, new = base.run.config, config
    diffs = [f"model.{k} {getattr(old.model, k)!r} -> {getattr(new.model, k)!r}"
             for k in SHAPE_KEYS if getattr(old.model, k) != getattr(new.model, k)]
    if old.tokens.level != new.tokens.level:
        diffs.append(f"tokens.level {old.tokens.level!r} -> {new.tokens.level!r} (a "
                     f"{old.tokens.level}-level model cannot start a {new.tokens.level}-level run)")
    if diffs:
        raise RunError(f"{base.run.path}: starting from this run keeps its model's shape; "
                       "these settings would change it: " + "; ".join(diffs))


def merge_weights(base: Base, fresh: dict[str, np.ndarray], vocab, styles: list[str],
                  cfg: ModelConfig) -> dict[str, np.ndarray]:
    """The new run's starting weights: ``fresh`` (a new model's) with every row the base
    knows replaced by the base's (see the module docstring)."""
    old = base.named
    named = {k: np.array(v, copy=True) for k, v in fresh.items()}
    new_ids, old_ids = _shared(vocab.tokens, base.run.vocab.tokens)
    named["embedding/embeddings"][new_ids] = old["embedding/embeddings"][old_ids]
    named["logits/kernel"][:, new_ids] = old["logits/kernel"][:, old_ids]
    named["logits/bias"][new_ids] = old["logits/bias"][old_ids]
    for i in range(cfg.layers):
        for w in ("recurrent_kernel", "bias") + (("kernel",) if i else ()):
            named[f"rnn_{i}/{w}"] = np.array(old[f"rnn_{i}/{w}"], copy=True)
    e = cfg.embedding_dim  # rnn_0's input: the token embedding, then the style embedding
    named["rnn_0/kernel"][:e] = old["rnn_0/kernel"][:e]
    new_s, old_s = _shared(styles, base.run.styles)
    if len(new_s):
        named["style/embeddings"][new_s] = old["style/embeddings"][old_s]
        named["rnn_0/kernel"][e:] = old["rnn_0/kernel"][e:]
    return named


def _shared(new_tokens, old_tokens) -> tuple[np.ndarray, np.ndarray]:
    """Ids in the new and in the old list of the tokens both lists hold."""
    old_index = {t: i for i, t in enumerate(old_tokens)}
    pairs = [(i, old_index[t]) for i, t in enumerate(new_tokens) if t in old_index]
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    new_ids, old_ids = zip(*pairs)
    return np.array(new_ids), np.array(old_ids)


def record(base: Base, vocab, corpus_tokens: set[str]) -> dict:
    """What config.json records of where a run started."""
    old = set(base.run.vocab.tokens)
    added = sorted(t for t in vocab.tokens if t not in old)
    return {"run": str(base.run.path.resolve()), "weights": base.weights.name,
            "weights_sha256": base.weights_hash, "tokens_kept": len(old & set(vocab.tokens)),
            "tokens_added": added[:200], "tokens_added_count": len(added),
            "tokens_absent_from_corpus": len(old - corpus_tokens)}
