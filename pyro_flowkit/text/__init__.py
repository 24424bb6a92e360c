"""Sentence vectors and their evaluation: STS-benchmark (shipped), a Hugging Face encoder (the
optional extra ``text``), cosine / Spearman scoring, and BERT-flow's vector flow; word vectors'
inputs: tokens, a vocabulary, window co-occurrence counts and their PMI, offline English corpora,
word-similarity and analogy benchmarks."""

from pyro_flowkit.text.cooccurrence import cooccurrence, log_marginals, pmi, sparse_counts
from pyro_flowkit.text.corpora import Corpus, load_corpus
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
from pyro_flowkit.text.words import Vocabulary, tokenize
from pyro_flowkit.text.wordsim import (
    Analogies,
    WordPairs,
    analogy_accuracy,
    load_analogies,
    load_word_pairs,
    word_similarity,
)

__all__ = [
    "Analogies",
    "Corpus",
    "Vocabulary",
    "WordPairs",
    "analogy_accuracy",
    "cooccurrence",
    "load_analogies",
    "load_corpus",
    "load_word_pairs",
    "log_marginals",
    "pmi",
    "sparse_counts",
    "tokenize",
    "word_similarity",
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
