"""Exported codebooks: the bridge between run directories and the figures.

Figures are made from ``results/`` only, never from run directories or checkpoints (those are not committed). After a
quantised run, ``export_codebook(run_dir, results_dir)`` writes ``<results>/codebooks/<run_id>.npz``, small enough to
commit (well under 1 MB for K = 100,000 at the default profile):

============== ============= =====================================================================================
array          shape / dtype what
============== ============= =====================================================================================
eval_counts    (M, K) int32  per-entry usage over the evaluation split, every sub-codebook (``usage.npz``)
train_pass_    (M, K) int32  per-entry usage of one pass of the final model over the training split (``usage.npz``
counts                       of runs trained since utilisation is counted there; absent from older exports)
train_counts   (R, M, K)     per-entry usage during training, one slice per history record (R = 0 when absent)
               int32
indices        (n,) int64    the entries of sub-codebook 0 kept in ``vectors``: all K when K <= ``max_entries``,
                             else a seeded random subset of ``max_entries``, sorted
vectors        (n, d) f16    those entries' vectors in lookup space (vq / vq-ema: the codebook; vq-fc: the D′-dim
                             codebook; lc: the projected feature bank; pq: its first subspace's)
meta           () str        JSON: run_id, kind, sub_kind, codebook_size, num_codebooks, lookup_dim, max_entries, seed
============== ============= =====================================================================================

``load_codebook(results_dir, run_id)`` reads one back as a dict (``meta`` decoded).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

CODEBOOKS_SUBDIR = "codebooks"
ARRAYS = ("eval_counts", "train_counts", "indices", "vectors")
OPTIONAL_ARRAYS = ("train_pass_counts",)


def codebook_path(results_dir: str | os.PathLike, rid: str) -> Path:
    return Path(results_dir) / CODEBOOKS_SUBDIR / f"{rid}.npz"


def list_codebooks(results_dir: str | os.PathLike) -> list[str]:
    """Run ids with an exported codebook, sorted."""
    folder = Path(results_dir) / CODEBOOKS_SUBDIR
    return sorted(p.stem for p in folder.glob("*.npz")) if folder.is_dir() else []


def subsample_indices(size: int, max_entries: int, seed: int = 0) -> np.ndarray:
    """All of ``range(size)`` when it fits, else ``max_entries`` of them drawn without replacement (seeded), sorted."""
    if max_entries <= 0 or size <= max_entries:
        return np.arange(size, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(size, size=max_entries, replace=False)).astype(np.int64)


def lookup_codebook(quantizer, indices: np.ndarray | None = None) -> np.ndarray:
    """Vectors of sub-codebook 0 in lookup space, (n, d) float32, for ``indices`` (None: every entry)."""
    import torch

    sub = quantizer.subquantizers[0] if hasattr(quantizer, "subquantizers") else quantizer
    with torch.no_grad():
        if hasattr(sub, "codebook"):
            codes = sub.codebook()
            if indices is not None:
                codes = codes[torch.as_tensor(indices, dtype=torch.long)]
        else:  # a quantiser without a codebook(): its lookup (output space)
            idx = torch.arange(sub.codebook_size) if indices is None else torch.as_tensor(indices, dtype=torch.long)
            codes = sub.lookup(idx)
    return codes.detach().float().cpu().numpy()


def _atomic_savez(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


def export_codebook(run_dir: str | os.PathLike, results_dir: str | os.PathLike = "results", max_entries: int = 4096,
                    seed: int = 0) -> Path:
    """Write ``<results_dir>/codebooks/<run_id>.npz`` from a finished quantised run directory; returns its path.

    Needs ``config.json``, ``checkpoint.pt`` and ``usage.npz`` (written by ``pqstudy.train_eval.train_and_evaluate``).
    """
    run_dir = Path(run_dir)
    usage_file = run_dir / "usage.npz"
    if not usage_file.exists():
        raise FileNotFoundError(f"{usage_file} does not exist: export_codebook needs a finished quantised run")
    from pqstudy.models.checkpoint import load_quantizer

    quantizer, cfg = load_quantizer(run_dir)
    with np.load(usage_file) as usage:
        eval_counts = np.asarray(usage["eval_counts"])
        train_counts = np.asarray(usage["train_counts"]) if "train_counts" in usage.files else None
        train_pass = np.asarray(usage["train_pass_counts"]) if "train_pass_counts" in usage.files else None
    m, k = eval_counts.shape
    if train_counts is None:
        train_counts = np.zeros((0, m, k), dtype=np.int32)
    indices = subsample_indices(k, max_entries, seed)
    vectors = lookup_codebook(quantizer, indices)
    q = cfg.quantizer
    meta = {"run_id": cfg.run_id, "kind": q.kind, "sub_kind": q.sub_kind if q.kind == "pq" else None,
            "codebook_size": int(k), "num_codebooks": int(m), "lookup_dim": int(vectors.shape[1]),
            "max_entries": int(max_entries), "seed": int(seed)}
    path = codebook_path(results_dir, cfg.run_id)
    save_codebook(path, eval_counts=eval_counts, train_counts=train_counts, indices=indices, vectors=vectors, meta=meta,
                  train_pass_counts=train_pass)
    return path


def save_codebook(path: str | os.PathLike, *, eval_counts, train_counts, indices, vectors, meta: dict,
                  train_pass_counts=None) -> Path:
    """Write one codebook file in the exported format (used by ``export_codebook``; tests write synthetic ones)."""
    eval_counts = np.asarray(eval_counts)
    train_counts = np.asarray(train_counts)
    if eval_counts.ndim != 2 or train_counts.ndim != 3 or train_counts.shape[1:] != eval_counts.shape:
        raise ValueError(f"counts: expected eval (M, K) and train (R, M, K), got {eval_counts.shape} and "
                         f"{train_counts.shape}")
    if eval_counts.size and eval_counts.max() > np.iinfo(np.int32).max:
        raise ValueError("eval_counts overflow int32")
    extra = {}
    if train_pass_counts is not None:
        train_pass_counts = np.asarray(train_pass_counts)
        if train_pass_counts.shape != eval_counts.shape or train_pass_counts.max(initial=0) > np.iinfo(np.int32).max:
            raise ValueError(f"train_pass_counts: expected {eval_counts.shape} int32-sized counts, got "
                             f"{train_pass_counts.shape}")
        extra["train_pass_counts"] = train_pass_counts.astype(np.int32)
    path = Path(path)
    _atomic_savez(
        path,
        **extra,
        eval_counts=eval_counts.astype(np.int32),
        train_counts=train_counts.astype(np.int32),
        indices=np.asarray(indices, dtype=np.int64),
        vectors=np.asarray(vectors, dtype=np.float16),
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )
    return path


def load_codebook(results_dir: str | os.PathLike, rid: str) -> dict:
    """``{eval_counts, train_counts, indices, vectors, meta}`` (and ``train_pass_counts`` where exported) of an
    exported codebook (FileNotFoundError if absent)."""
    path = codebook_path(results_dir, rid)
    if not path.exists():
        raise FileNotFoundError(f"no exported codebook for run {rid} at {path} (see pqstudy.study.codebook_export)")
    with np.load(path, allow_pickle=False) as data:
        out = {name: np.asarray(data[name]) for name in ARRAYS}
        out.update({name: np.asarray(data[name]) for name in OPTIONAL_ARRAYS if name in data.files})
        out["meta"] = json.loads(str(data["meta"]))
    return out
