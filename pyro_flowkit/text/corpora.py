r"""English text available offline, to train word vectors without a download.

Four sources, all small (about a million tokens together, where word vectors are usually trained
on billions):

- ``"sts"``: the distinct sentences of STS-benchmark, shipped with this package (about 15k
  sentences of news, captions and forum posts);
- ``"python"``: the documentation of Python's standard library, read from the sources of the
  running interpreter (module, class and function docstrings, parsed with :mod:`ast` without
  importing anything, with their ``>>>`` lines left out) and the language reference topics of
  ``pydoc_data``;
- ``"lee"``: the Lee background corpus of news articles (``lee_background.cor``) and
- ``"wikipedia"``: the 206 Wikipedia articles of ``enwiki-latest-pages-articles1...-shortened``,
  both from the test data inside gensim's wheel (the extra ``bench``); the articles' markup is
  stripped with gensim's own ``filter_wiki``.

A document is one sentence, paragraph or article, as a string; windows of co-occurrence do not
span documents.

References:
    | SemEval-2017 Task 1: Semantic Textual Similarity (Cer et al., 2017)
    | https://arxiv.org/abs/1708.00055
    | An Empirical Evaluation of Models of Text Document Similarity (Lee, Pincombe & Welsh, 2005)
    | https://escholarship.org/uc/item/48g155nq
"""

from __future__ import annotations

import ast
import bz2
import importlib.util
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from pyro_flowkit.text.stsb import sts_sentences
from pyro_flowkit.validation import check_choice

__all__ = [
    "SOURCES",
    "Corpus",
    "gensim_data_dir",
    "lee_background",
    "load_corpus",
    "python_docs",
    "sts_corpus",
    "wikipedia_sample",
]

SOURCES = ("sts", "python", "lee", "wikipedia")
BENCH_EXTRA = "pip install 'pyro-flowkit[bench]'"
_WIKI = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
_SKIPPED_DIRS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3"}


def gensim_data_dir() -> Path | None:
    """The folder of test data inside the installed gensim (``gensim/test/test_data``), found
    without importing gensim; ``None`` when gensim is not installed.

    Example:
        >>> folder = gensim_data_dir()  # None without the extra 'bench'
    """
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data"
    return folder if folder.is_dir() else None


def _gensim_file(name: str) -> Path:
    folder = gensim_data_dir()
    if folder is None or not (folder / name).is_file():
        raise FileNotFoundError(
            f"{name}: it ships inside gensim's wheel, which is not installed; {BENCH_EXTRA}"
        )
    return folder / name


def sts_corpus() -> list[str]:
    """The distinct sentences of STS-benchmark's three splits, in their first order of
    appearance (the scores are not used).

    Example:
        >>> len(sts_corpus()) < 17256  # 2 x 8628 sentences, some repeated
        True
    """
    return list(dict.fromkeys(sts_sentences()))


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs of a docstring, without doctest lines."""
    out = []
    for block in text.split("\n\n"):
        lines = [ln for ln in block.splitlines() if not ln.lstrip().startswith((">>>", "..."))]
        paragraph = " ".join(ln.strip() for ln in lines).strip()
        if paragraph:
            out.append(paragraph)
    return out


def _docstrings(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return []
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    found = (ast.get_docstring(node) for node in ast.walk(tree) if isinstance(node, kinds))
    return [paragraph for doc in found if doc for paragraph in _paragraphs(doc)]


def python_docs() -> list[str]:
    """Paragraphs of the standard library's docstrings (sorted by file) and of the language
    reference topics in ``pydoc_data``.

    Example:
        >>> docs = python_docs()  # doctest: +SKIP
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    paragraphs = []
    for path in sorted(root.rglob("*.py")):
        if _SKIPPED_DIRS.isdisjoint(path.relative_to(root).parts[:-1]):
            paragraphs += _docstrings(path)
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions leave pydoc_data out
        topics = {}
    for name in sorted(topics):
        paragraphs += _paragraphs(topics[name])
    return paragraphs


def lee_background() -> list[str]:
    """The Lee background corpus (300 news articles, one per line), from gensim's test data.

    Raises ``FileNotFoundError`` without gensim.

    Example:
        >>> articles = lee_background()  # doctest: +SKIP
    """
    text = _gensim_file("lee_background.cor").read_text(encoding="utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip()]


def wikipedia_sample() -> list[str]:
    """The paragraphs of the 206 Wikipedia articles in gensim's test data, markup stripped by
    gensim's ``filter_wiki`` (headings and redirects left out).

    Raises ``FileNotFoundError`` without gensim.

    Example:
        >>> paragraphs = wikipedia_sample()  # doctest: +SKIP
    """
    path = _gensim_file(_WIKI)
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    paragraphs = []
    with bz2.open(path, "rb") as f:
        for _title, text, _page in extract_pages(f):
            for line in filter_wiki(text).splitlines():
                line = line.strip()
                if line and not line.startswith(("=", "#REDIRECT", "#redirect")):
                    paragraphs.append(line)
    return paragraphs


_LOADERS = {
    "sts": sts_corpus,
    "python": python_docs,
    "lee": lee_background,
    "wikipedia": wikipedia_sample,
}


@dataclass
class Corpus:
    """Documents (strings) of the sources loaded, how many came from each, and the sources
    skipped with the reason."""

    documents: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def load_corpus(sources: tuple[str, ...] = SOURCES, strict: bool = False) -> Corpus:
    """The documents of ``sources`` (see :data:`SOURCES`), one after another. A source that
    needs gensim is skipped when it is missing (recorded in ``Corpus.skipped``), or raises
    ``FileNotFoundError`` with ``strict=True``.

    Example:
        >>> corpus = load_corpus(("sts",))
        >>> corpus.sizes["sts"] == len(corpus.documents), corpus.skipped
        (True, {})
    """
    corpus = Corpus()
    for source in sources:
        check_choice("sources", source, SOURCES)
        try:
            documents = _LOADERS[source]()
        except FileNotFoundError as error:
            if strict:
                raise
            corpus.skipped[source] = str(error)
            continue
        corpus.documents += documents
        corpus.sizes[source] = len(documents)
    return corpus
