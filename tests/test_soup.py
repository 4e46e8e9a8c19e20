"""Weight averaging (`ferkit.models.soup`, `ferkit soup`): the mean of the members' weights,
refused for members that cannot average, and the greedy soup's choice."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import make_checkpoint
from ferkit.cli import main
from ferkit.errors import CheckpointError
from ferkit.inference.model_io import load_torch_model
from ferkit.labels import FERPLUS_EMOTIONS
from ferkit.models.soup import average_models, greedy_soup
from test_ferplus import ROWS, write_ferplus, write_pixels


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    root = tmp_path_factory.mktemp("soup")
    return [str(make_checkpoint(root / f"m{seed}.pt", seed=seed)) for seed in range(3)]


def test_the_soup_is_the_mean_of_the_weights(members):
    loaded = [load_torch_model(m) for m in members]
    soup, meta = average_models(loaded, members)
    states = [model.state_dict() for model, _ in loaded]
    for key, tensor in soup.state_dict().items():
        if tensor.is_floating_point():
            expected = sum(s[key] for s in states) / 3
            torch.testing.assert_close(tensor, expected)
    assert meta["extra"]["soup"]["members"] == members
    assert meta["temperature"] is None and meta["metrics"] == {}
    assert not soup.training


def test_members_that_cannot_average_are_refused(members, tmp_path):
    other = make_checkpoint(tmp_path / "ferplus.pt", labels=FERPLUS_EMOTIONS)
    loaded = [load_torch_model(m) for m in (members[0], other)]
    with pytest.raises(CheckpointError, match=r"differs from .* in num_classes"):
        average_models(loaded, [members[0], str(other)])
    with pytest.raises(CheckpointError, match="at least two"):
        average_models(loaded[:1])


def test_the_same_weights_twice_are_refused(members, tmp_path, capsys):
    copy = tmp_path / "last.pt"  # a run's last.pt when its best epoch was its last
    shutil.copy(members[0], copy)
    out = tmp_path / "soup.pt"
    assert main(["soup", members[0], members[1], str(copy), "--out", str(out)]) == 2
    assert "hold the same weights" in capsys.readouterr().err
    assert not out.exists()


def test_greedy_soup_keeps_only_what_helps(members):
    loaded = [load_torch_model(m) for m in members]
    # a score that prefers the second member alone and punishes every mixture with the third
    weight = {id(model): s for (model, _), s in zip(loaded, (0.5, 0.9, 0.1), strict=True)}
    first = loaded[0][0].state_dict()

    def score(model):
        if id(model) in weight:
            return weight[id(model)]
        # a soup: how close its first weight is to the mean of members 1 and 2 (0: closest)
        key = next(iter(first))
        target = (loaded[0][0].state_dict()[key] + loaded[1][0].state_dict()[key]) / 2
        return 1.0 - float((model.state_dict()[key] - target).abs().mean())

    soup, meta, trace = greedy_soup(loaded, score, ["a", "b", "c"])
    assert [step["tried"] for step in trace] == [["b"], ["b", "a"], ["b", "a", "c"]]
    assert [step["kept"] for step in trace] == [True, True, False]
    assert meta["extra"]["soup"]["members"] == ["b", "a"]
    assert meta["metrics"]["score"] == trace[1]["score"] == pytest.approx(1.0)
    pair, _ = average_models(loaded[:2])
    for key, tensor in soup.state_dict().items():
        torch.testing.assert_close(tensor, pair.state_dict()[key])


def test_cli_writes_a_soup_that_loads_and_reports_scores(members, msambare, tmp_path, capsys):
    out = tmp_path / "soup.pt"
    assert main(["soup", *members, "--out", str(out), "--data", str(msambare), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [m["model"] for m in doc["members"]] == members and doc["kept"] == members
    assert all(0 <= m["score"] <= 1 for m in doc["members"])
    assert 0 <= doc["score"] <= 1
    _, meta = load_torch_model(out)
    assert meta["extra"]["soup"]["members"] == members
    assert main(["evaluate", str(out), "--data", str(msambare)]) == 0

    greedy = tmp_path / "greedy.pt"
    args = ["soup", *members, "--out", str(greedy), "--greedy", "--data", str(msambare)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "soup of" in printed and f"wrote {greedy}" in printed


def test_cli_shows_each_source_and_scores_ferplus_soups(members, msambare, tmp_path, capsys):
    out = tmp_path / "two.pt"
    data = ["--data", str(msambare), "--data", str(msambare / "test")]
    assert main(["soup", *members, "--out", str(out), *data, "--greedy", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    for entry in [*doc["members"], doc, *doc["greedy"]]:  # the mean of the two, each kept
        assert len(entry["per_data"]) == 2
        assert entry["score"] == pytest.approx(sum(entry["per_data"]) / 2)
    assert main(["soup", *members, "--out", str(tmp_path / "t.pt"), *data]) == 0
    assert "%, " in capsys.readouterr().out  # the mean, then each source's figure

    # 8-class FER+ members: scored on FER+ majority labels, refused on FER-2013's seven
    pixels = write_pixels(tmp_path / "fer2013.csv", [r[0] for r in ROWS])
    labels = write_ferplus(tmp_path / "fer2013new.csv")
    plus = [
        str(make_checkpoint(tmp_path / f"p{seed}.pt", seed=seed, labels=FERPLUS_EMOTIONS))
        for seed in (1, 2)
    ]
    soup = tmp_path / "plus.pt"
    args = ["soup", *plus, "--out", str(soup), "--data", str(pixels)]
    assert main(args) == 2 and "--ferplus" in capsys.readouterr().err
    assert main([*args, "--ferplus", str(labels), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ferplus"] == str(labels) and 0 <= doc["score"] <= 1
    assert load_torch_model(soup)[1]["labels"] == list(FERPLUS_EMOTIONS)


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "already exists"),  # never overwrites an existing file unasked
        (["--greedy"], "--greedy needs --data"),
    ],
)
def test_cli_refuses_bad_requests_before_any_work(members, tmp_path, capsys, extra, message):
    out = tmp_path / "soup.pt"
    out.write_bytes(b"precious")
    if "--greedy" in extra:
        out.unlink()
    assert main(["soup", *members, "--out", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    if not extra:
        assert out.read_bytes() == b"precious"


def test_cli_refuses_one_member_or_a_repeated_one(members, tmp_path, capsys):
    out = tmp_path / "soup.pt"
    assert main(["soup", members[0], "--out", str(out)]) == 2
    assert main(["soup", members[0], members[0], "--out", str(out)]) == 2
    assert main(["soup", *members, "--out", str(tmp_path / "soup.onnx")]) == 2
    assert not out.exists()
