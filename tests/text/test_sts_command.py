"""``flowkit sts`` as add_parser/run, and the table it prints, on synthetic sentence vectors (the
real encoder is exercised in test_encoder.py, the benchmark and the demo)."""

import argparse
import functools
import json

import pytest
import torch

from pyro_flowkit.app import sts
from pyro_flowkit.app.cli import _Parser
from pyro_flowkit.text.sts import cosine


def _fake_embed_sts(splits, model=None, poolings=(), batch_size=64, max_length=64, progress=True,
                    smallest=-2):  # fmt: skip
    """Cone-shaped vectors for every split, the gold score of a pair being its latent cosine."""
    g = torch.Generator().manual_seed(0)
    stretch = torch.diag(torch.logspace(smallest, 1, 6, dtype=torch.float64))
    vectors, scores = {p: {} for p in poolings}, {}
    for split in splits:
        a, b = torch.randn(2, 150, 6, generator=g, dtype=torch.float64)
        b = a + b
        scores[split] = cosine(a, b)
        for pooling in poolings:
            vectors[pooling][split] = (a @ stretch + 20, b @ stretch + 20)
    return vectors, scores


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    parser = _Parser(prog="flowkit")
    sub = parser.add_subparsers(dest="command", required=True)
    return parser, sts.add_parser(sub)


def test_run_prints_both_tables_and_writes_json(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sts, "embed_sts", _fake_embed_sts)
    parser, _ = _parser()
    out = tmp_path / "sts.json"
    options = ["--flow-steps", "5", "--flow-depth", "1", "--json", str(out), "--no-progress"]
    args = parser.parse_args(["sts", "--poolings", "cls", "mean", *options])
    assert sts.run(args) == 0
    printed = capsys.readouterr().out
    assert "| CLS (last layer) |" in printed and "| mean (last layer) |" in printed
    assert "| BERT-flow (target) | flow after whitening |" in printed and "fit seconds:" in printed
    table = json.loads(out.read_text())
    row = table["rows"]["cls"]
    assert set(row) == {"raw", "whitening", "whitening-train", "bert-flow", "flow-whitening"}
    assert row["raw"]["spearman"] < 70 < 90 < row["whitening"]["spearman"]  # the cone, undone
    assert row["bert-flow"]["seconds"] > 0 and table["settings"]["flow"]["steps"] == 5


def test_no_flow_steps_means_no_flow_columns(monkeypatch):
    monkeypatch.setattr(sts, "embed_sts", _fake_embed_sts)
    table = sts.sts_table(poolings=("mean",), flow=sts.FlowSettings(steps=0), progress=False)
    assert "bert-flow" not in table["rows"]["mean"]
    text = sts.format_table(table)
    assert text.splitlines()[0].endswith("| whitening (train) |")


def test_whitening_columns_are_the_whitening_spearman(monkeypatch):
    """The table's whitening column is sts_spearman under the whitening fitted on the target."""
    from pyro_flowkit.flows.distribution import flow_distribution
    from pyro_flowkit.text.sts import sts_spearman
    from pyro_flowkit.transforms.whitening import Whitening

    vectors, scores = _fake_embed_sts(("train", "dev", "test"), poolings=("cls",))
    row = sts.evaluate_pooling(vectors["cls"], scores["test"], columns=("whitening",))
    target = torch.cat([v for split in vectors["cls"].values() for v in split])
    w = Whitening.from_data(target)
    expected = 100 * sts_spearman(*vectors["cls"]["test"], scores["test"], w.inv)
    assert row["whitening"]["spearman"] == pytest.approx(expected, abs=1e-9)
    nll = -flow_distribution(w, 6).log_prob(target).mean().item() / 6
    assert row["whitening"]["nll_per_dim"] == pytest.approx(nll, abs=1e-12)


def test_bad_values_exit_with_the_usage(capsys):
    parser, _ = _parser()
    for bad in (["--flow-steps", "-1"], ["--flow-depth", "0"], ["--poolings", "max"]):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["sts", *bad])
        assert exit_info.value.code == 2
    assert "flowkit: error: argument" in capsys.readouterr().err


def test_demo_step_is_skipped_without_the_extra(monkeypatch, tmp_path, capsys):
    def missing(*args, **kwargs):
        raise ImportError("needs the optional extra 'text': pip install 'pyro-flowkit[text]'")

    monkeypatch.setattr(sts, "load_encoder", missing)
    report = sts.demo_step(tmp_path, quick=True)
    assert "pyro-flowkit[text]" in report["skipped"]
    assert "STS step skipped" in capsys.readouterr().out and not (tmp_path / "sts.json").exists()


def test_demo_step_quick_writes_the_table(monkeypatch, tmp_path):
    monkeypatch.setattr(sts, "load_encoder", lambda: None)
    monkeypatch.setattr(sts, "embed_sts", _fake_embed_sts)
    small = functools.partial(sts.FlowSettings, depth=1, hidden_dims=(8,))
    monkeypatch.setattr(sts, "FlowSettings", small)
    report = sts.demo_step(tmp_path, quick=True)
    saved = json.loads((tmp_path / "sts.json").read_text())
    assert saved["settings"]["target_splits"] == ["test"] == report["settings"]["target_splits"]
    assert set(saved["rows"]) == {"embeddings", "cls", "mean", "first_last_avg"}
    assert "whitening-train" not in saved["rows"]["mean"]
    assert saved["settings"]["flow"]["steps"] == 100


def test_flow_columns_record_the_spearman_along_training():
    """At step 0 the flow after whitening is the whitening (identity ActNorms and couplings);
    the last checkpoint is the table's value."""
    from pyro_flowkit.text.sts import sts_spearman
    from pyro_flowkit.transforms.whitening import Whitening

    # scales 0.1..10 (not 0.01): float32 whitening of a cone of scales 0.01..10 at offset 20 is
    # off by 7% along its thinnest axis, which the ActNorm after it then corrects
    vectors, scores = _fake_embed_sts(("train", "dev", "test"), poolings=("cls",), smallest=-1)
    settings = sts.FlowSettings(depth=1, hidden_dims=(8,), steps=4, checkpoints=(0, 2, 4))
    row = sts.evaluate_pooling(vectors["cls"], scores["test"], flow=settings, progress=False)
    for column in ("bert-flow", "flow-whitening"):
        along = row[column]["spearman_at"]
        assert sorted(along) == [0, 2, 4]
        assert along[4] == pytest.approx(row[column]["spearman"], abs=1e-9)
    target = torch.cat([v for split in vectors["cls"].values() for v in split]).float()
    a, b = (v.float() for v in vectors["cls"]["test"])  # the flows run in float32
    whitened = 100 * sts_spearman(a, b, scores["test"], Whitening.from_data(target).inv)
    assert row["flow-whitening"]["spearman_at"][0] == pytest.approx(whitened, abs=0.05)
