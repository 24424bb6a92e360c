"""``flowkit glove``: it trains on the offline corpus, prints neighbours, writes the model, and
without gensim still trains and says that the scores need the extra ``bench``."""

import pytest

from pyro_flowkit.app import glove as command
from pyro_flowkit.app.cli import _Parser
from pyro_flowkit.models.glove import SimplerGloVe
from pyro_flowkit.text import corpora, wordsim


def parse(argv):
    parser = _Parser(prog="flowkit")
    command.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


TINY = ["glove", "--sources", "sts", "--dim", "8", "--window", "2", "--min-count", "50",
        "--epochs", "1", "--words", "man", "zebra", "--no-progress"]  # fmt: skip


def test_glove_command_trains_prints_neighbours_and_writes_the_model(tmp_path, capsys):
    assert command.run(parse([*TINY, "--out", str(tmp_path)])) == 0
    printed = capsys.readouterr().out
    assert "corpus: " in printed and "tokens" in printed and "  man: " in printed
    assert "zebra" not in printed.split("nearest neighbours")[1]  # not in the vocabulary
    model = SimplerGloVe.load(tmp_path / "glove.pt")
    assert model.dim == 8 and "man" in model.vocabulary
    assert (tmp_path / "glove.json").is_file()


def test_without_gensim_it_still_trains_and_says_scores_need_the_extra(
    monkeypatch, capsys, tmp_path
):
    for module in (corpora, wordsim):
        monkeypatch.setattr(module, "gensim_data_dir", lambda: None)
    monkeypatch.setattr(wordsim, "PACKAGE_DATA", tmp_path / "absent")
    args = parse([*TINY[:2], "sts", "lee", *TINY[3:]])
    assert command.run(args) == 0
    printed = capsys.readouterr().out
    assert "skipped lee" in printed and "  man: " in printed
    assert "word-benchmark scores skipped" in printed and "pyro-flowkit[bench]" in printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["glove", "--dim", "0"], "argument --dim: expected a positive integer, got 0"),
        (["glove", "--sources", "reddit"], "argument --sources: invalid choice"),
        (["glove", "--variant", "3"], "argument --variant: invalid choice"),
        (["glove", "--lr", "0"], "argument --lr: expected a positive"),
    ],
)
def test_bad_options_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
