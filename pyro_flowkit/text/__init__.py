"""Sentence vectors and their evaluation: STS-benchmark (shipped), a Hugging Face encoder (the
optional extra ``text``), cosine / Spearman scoring, and BERT-flow's vector flow."""

from pyro_flowkit.text.encoder import (
    DEFAULT_MODEL,
    POOLINGS,
    cache_dir,
    default_model_path,
    encode,
    encode_poolings,
    load_encoder,
)
from pyro_flowkit.text.sts import bert_flow, cosine, spearman, sts_spearman
from pyro_flowkit.text.stsb import STS_SPLITS, STSPairs, load_sts_benchmark, sts_sentences

__all__ = [
    "DEFAULT_MODEL",
    "POOLINGS",
    "STSPairs",
    "STS_SPLITS",
    "bert_flow",
    "cache_dir",
    "cosine",
    "default_model_path",
    "encode",
    "encode_poolings",
    "load_encoder",
    "load_sts_benchmark",
    "spearman",
    "sts_sentences",
    "sts_spearman",
]
