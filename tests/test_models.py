"""The model zoo: every registered model builds, trains a step, round-trips through a
checkpoint; transfer models load local weights and freeze what they say; errors say what to do.

Fast (CPU, batch 2, no network): `.venv/bin/pytest -q tests/test_models.py`.
"""

from __future__ import annotations

import json
import urllib.error

import pytest
import torch
import torchvision
from torch import nn

import ferkit.cli as cli
import ferkit.cli.models as models_cli
from conftest import save_zoo_checkpoint as save
from ferkit.errors import CheckpointError, ConfigError
from ferkit.labels import EMOTIONS
from ferkit.models import (
    count_macs,
    count_parameters,
    create_model,
    freeze,
    get_model_spec,
    list_models,
    load_checkpoint,
    param_groups,
    register_model,
    save_checkpoint,
)
from ferkit.preprocess import to_model_input

ALL = list_models()
TRANSFER = ["resnet18", "efficientnet_b0"]
# Names of each transfer model's parts, as torchvision names them.
HEAD = {"resnet18": ("fc.",), "efficientnet_b0": ("classifier.",)}
LAST_STAGE = {"resnet18": ("layer4.",), "efficientnet_b0": ("features.7.", "features.8.")}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small_input(name: str, batch: int = 2) -> torch.Tensor:
    """A batch of 48x48 inputs: the default size of the FER models, and small enough for the
    112x112 transfer models (their stride-32 networks still end at 2x2) to test fast."""
    return torch.randn(batch, get_model_spec(name).in_channels, 48, 48)


# --- registry -------------------------------------------------------------------------------


def test_registry_has_every_family():
    for name in ["simple_cnn", "fer_model0", "vgg_13", "resnet18", "resnet18_fer"]:
        assert name in ALL
    assert {"efficientnet_b0", "flagship"} <= set(ALL)
    assert len([n for n in ALL if n.startswith("vgg_")]) >= 3


@pytest.mark.parametrize("name", ALL)
def test_spec_is_complete(name):
    spec = get_model_spec(name)
    assert spec.name == name and spec.description
    assert len(spec.input_size) == 2 and spec.in_channels == 1
    assert len(spec.mean) == len(spec.std) == spec.in_channels
    mean3, std3 = spec.normalisation(3)
    assert len(mean3) == len(std3) == 3


def test_unknown_model_lists_valid_names_and_close_matches():
    with pytest.raises(ConfigError) as err:
        create_model("vgg13")
    msg = str(err.value)
    assert "Did you mean 'vgg_13'" in msg and "flagship" in msg
    with pytest.raises(ConfigError, match="unknown model"):
        get_model_spec("nope")


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(
        ConfigError, match=r"model 'flagship': unknown option 'widht'. Did you mean 'widths'"
    ):
        create_model("flagship", widht=[1, 2])
    with pytest.raises(ConfigError, match="in_channels"):
        create_model("flagship", in_channels=2)
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("flagship", num_classes=0)
    with pytest.raises(ConfigError, match=r"'flagship': options .* not valid"):
        create_model("flagship", widths=[8, 16], depths=[1, 1, 1])


def test_none_options_mean_the_default():
    model = create_model("flagship", dropout=None, widths=None, pretrained=None)
    assert model.ferkit_kwargs == {"num_classes": 7, "in_channels": 1}
    assert model.dropout.p == 0.3


def test_options_are_recorded_as_primitives():
    model = create_model("flagship", widths=(16, 32, 64, 128), dropout=0.1)
    assert model.ferkit_arch == "flagship"
    assert model.ferkit_kwargs["widths"] == [16, 32, 64, 128]
    rebuilt = create_model(model.ferkit_arch, **model.ferkit_kwargs)
    assert count_parameters(rebuilt) == count_parameters(model)
    with pytest.raises(ConfigError, match="numbers, strings"):
        create_model("flagship", widths=torch.tensor([1, 2]))


def test_a_builder_create_model_cannot_call_is_refused_at_registration():
    with pytest.raises(TypeError, match=r"'no_channels'.*no 'in_channels' parameter"):

        @register_model()
        def no_channels(*, num_classes=7):
            return nn.Linear(1, num_classes)

    with pytest.raises(TypeError, match=r"parameter 'width' has no default"):

        @register_model()
        def needs_width(*, num_classes=7, in_channels=1, width):
            return nn.Linear(width, num_classes)

    assert "no_channels" not in list_models() and "needs_width" not in list_models()


@pytest.mark.parametrize("name", ALL)
def test_every_option_a_builder_advertises_is_accepted(name):
    import inspect

    from ferkit.models.registry import _lookup

    params = inspect.signature(_lookup(name)[0]).parameters.values()
    options = {p.name: p.default for p in params if p.name not in ("pretrained", "num_classes")}
    model = create_model(name, **options)  # each option at its default, given explicitly
    assert model.ferkit_kwargs["num_classes"] == 7


def test_a_model_without_get_classifier_is_refused_when_built(monkeypatch):
    import ferkit.models.registry as registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # undone after

    @register_model()
    def headless(*, num_classes=7, in_channels=1):
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    with pytest.raises(ConfigError, match=r"'headless' has no get_classifier\(\)"):
        create_model("headless")


# --- every model: forward, backward, checkpoint ---------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_forward_backward(name):
    model = create_model(name)
    assert model.ferkit_arch == name and isinstance(model.ferkit_kwargs, dict)
    x = small_input(name)
    logits = model(x)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.tensor([0, 6])).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert model.get_classifier() is not None


@pytest.mark.parametrize("name", ALL)
def test_other_num_classes_and_rgb_input(name):
    model = create_model(name, num_classes=3, in_channels=3).eval()
    spec = get_model_spec(name)
    x = to_model_input(
        torch.randint(0, 256, (2, 48, 48), dtype=torch.uint8),
        input_size=small_input(name).shape[-2:],
        mean=spec.normalisation(3)[0],
        std=spec.normalisation(3)[1],
        in_channels=3,
    )
    with torch.no_grad():
        assert model(x).shape == (2, 3)


def test_model_input_stays_on_the_batch_device():
    # GPU batches must not meet CPU mean/std tensors; the meta device stands in for a GPU here
    faces = torch.rand(2, 1, 48, 48, device="meta")
    x = to_model_input(faces, input_size=(48, 48), mean=(0.5,), std=(0.5,), in_channels=3)
    assert x.device.type == "meta" and x.shape == (2, 3, 48, 48)


@pytest.mark.parametrize("name", ALL)
def test_checkpoint_round_trip_gives_identical_outputs(name, tmp_path):
    model = create_model(name).eval()
    x = small_input(name)
    with torch.no_grad():
        expected = model(x)
    metrics = {"test_accuracy": 0.5, "per_class": [0.1] * 7}
    path = save(tmp_path / "m.pt", model, name, metrics=metrics, temperature=1.5, extra={"a": 1})
    loaded, meta = load_checkpoint(path, arch=name)
    assert not loaded.training and loaded.ferkit_arch == name
    assert loaded.ferkit_kwargs == model.ferkit_kwargs
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)
    spec = get_model_spec(name)
    assert meta["arch"] == name and meta["format"] == "ferkit" and meta["format_version"] == 1
    assert meta["input_size"] == list(spec.input_size) and meta["in_channels"] == 1
    assert meta["mean"] == list(spec.mean) and meta["std"] == list(spec.std)
    assert meta["labels"] == list(EMOTIONS) and meta["num_classes"] == 7
    assert meta["metrics"] == metrics and meta["temperature"] == 1.5 and meta["extra"] == {"a": 1}
    assert "state_dict" not in meta


def test_parameter_counts_match_the_cli(capsys, monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", ("models",))  # only this command's module is needed
    assert cli.main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert sorted(rows) == ALL
    for name in ALL:
        model = create_model(name)
        assert rows[name]["params"] == count_parameters(model)
        assert rows[name]["macs"] > 0  # count_macs itself: test_count_macs_matches_a_hand_count
        assert rows[name]["input_size"] == list(get_model_spec(name).input_size)
    # The table shows the same rows; reuse them rather than build every model again.
    monkeypatch.setattr(models_cli, "model_rows", lambda: list(rows.values()))
    assert cli.main(["models"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in ALL) and "MMACs" in table


def test_count_macs_matches_a_hand_count():
    # simple_cnn at 48x48: four valid 3x3 convs and two dense layers.
    expected = (
        46 * 46 * 32 * 1 * 9
        + 44 * 44 * 64 * 32 * 9
        + 20 * 20 * 128 * 64 * 9
        + 8 * 8 * 128 * 128 * 9
        + 2048 * 1024
        + 1024 * 7
    )
    model = create_model("simple_cnn")
    assert count_macs(model) == count_macs(model, (48, 48), 1) == expected
    assert count_macs(model, (96, 96), 1) > 3 * expected
    assert model.training  # put back in the mode it was in


def test_flagship_meets_its_budget():
    model = create_model("flagship")
    assert count_macs(model) < 150e6  # the inference-speed budget (docs/models.md)
    assert 3e6 < count_parameters(model) < 8e6  # capacity of the VGGs that reach ~73%
    feats = model.forward_features(torch.randn(1, 1, 48, 48))
    assert feats.shape == (1, model.num_features, 3, 3)


def test_batch_norm_ablation_removes_every_norm():
    for name in ["simple_cnn", "fer_model0", "vgg_11_half", "flagship"]:
        model = create_model(name, batch_norm=False)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        assert torch.isfinite(model(small_input(name))).all()
    assert any(
        isinstance(m, nn.BatchNorm2d) for m in create_model("simple_cnn", batch_norm=True).modules()
    )


# --- checkpoint errors ----------------------------------------------------------------------


def test_save_refuses_to_overwrite(tmp_path):
    model = create_model("fer_model0")
    path = save(tmp_path / "m.pt", model, "fer_model0")
    with pytest.raises(CheckpointError, match="overwrite=True"):
        save(path, model, "fer_model0")
    save(path, model, "fer_model0", overwrite=True)


def test_half_checkpoint_is_half_the_size_and_loads_as_float32(tmp_path):
    torch.manual_seed(0)
    model = create_model("flagship").eval()
    full = save(tmp_path / "full.pt", model, "flagship")
    half = save(tmp_path / "half.pt", model, "flagship", half=True)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded, _ = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=5e-3, rtol=5e-3)


def test_str_subclasses_in_metadata_load_safely(tmp_path):
    # torch.__version__ is a str subclass: stored as a plain str, or weights_only refuses it
    path = save(
        tmp_path / "m.pt",
        create_model("fer_model0"),
        "fer_model0",
        extra={"torch": torch.__version__},
    )
    assert load_checkpoint(path)[1]["extra"]["torch"] == str(torch.__version__)


def test_save_checks_labels_and_model(tmp_path):
    with pytest.raises(CheckpointError, match="3 labels"):
        save(tmp_path / "a.pt", create_model("fer_model0"), "fer_model0", labels=["a", "b", "c"])
    with pytest.raises(CheckpointError, match="not built by"):
        save(tmp_path / "b.pt", nn.Linear(2, 7), "fer_model0")
    model = create_model("fer_model0")
    # the input's rules are InputSpec's, the same that loading applies
    with pytest.raises(CheckpointError, match=r"c\.pt: 'std' must be numbers > 0"):
        save_checkpoint(
            tmp_path / "c.pt", model, input_size=(48, 48), in_channels=1, mean=(0.5,), std=(0,)
        )
    with pytest.raises(CheckpointError, match="'input_size' must be"):
        save_checkpoint(
            tmp_path / "d.pt", model, input_size=(48,), in_channels=1, mean=(0.5,), std=(0.5,)
        )
    assert not list(tmp_path.iterdir())


def test_load_errors_name_the_file_and_what_to_do(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"junk\.pt is not a.*torch file"):
        load_checkpoint(junk)
    bare = tmp_path / "bare.pt"
    torch.save(create_model("fer_model0").state_dict(), bare)
    with pytest.raises(CheckpointError, match=r"bare state dict.*load_state_dict.*pretrained"):
        load_checkpoint(bare)
    other = tmp_path / "other.pt"
    torch.save({"format": "something else"}, other)
    with pytest.raises(CheckpointError, match="not a ferkit checkpoint"):
        load_checkpoint(other)


class _Payload:
    """Stands for code a malicious checkpoint would run when unpickled."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_load_refuses_files_that_could_run_code(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "ferkit", "payload": _Payload()}, path)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(path)
    assert "must never run" not in capsys.readouterr().out


def test_load_with_another_arch_names_both(tmp_path):
    path = save(tmp_path / "m.pt", create_model("fer_model0"), "fer_model0")
    with pytest.raises(CheckpointError, match=r"'fer_model0' model, not the 'flagship'"):
        load_checkpoint(path, arch="flagship")


def test_load_with_weights_of_another_architecture_names_keys(tmp_path):
    path = save(tmp_path / "m.pt", create_model("fer_model0"), "fer_model0")
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"] = create_model("simple_cnn").state_dict()
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"do not fit architecture 'fer_model0'.*features\."):
        load_checkpoint(path)


def test_from_scratch_model_loads_a_local_state_dict(tmp_path):
    source = create_model("flagship")
    path = tmp_path / "flagship.pt"
    torch.save(source.state_dict(), path)
    model = create_model("flagship", pretrained=path)
    assert "pretrained" not in model.ferkit_kwargs  # a checkpoint must not need the file
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    with pytest.raises(CheckpointError, match="do not fit architecture 'vgg_11_half'"):
        create_model("vgg_11_half", pretrained=path)
    with pytest.raises(ConfigError, match=r"no ImageNet weights.*resnet18"):
        create_model("flagship", pretrained="imagenet")


# --- transfer models ------------------------------------------------------------------------


def _torchvision(name: str) -> nn.Module:
    return getattr(torchvision.models, name)(weights=None)


STEM = {"resnet18": "conv1.weight", "efficientnet_b0": "features.0.0.weight"}


@pytest.mark.parametrize("name", TRANSFER)
def test_local_pretrained_weights_load_with_a_gray_stem(name, tmp_path):
    reference = _torchvision(name)  # 3-channel, 1000-class, as torchvision saves it
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    model = create_model(name, pretrained=str(path))
    saved, got = reference.state_dict(), model.state_dict()
    torch.testing.assert_close(got[STEM[name]], saved[STEM[name]].sum(dim=1, keepdim=True))
    assert got[STEM[name]].shape[1] == 1
    head = HEAD[name][0]
    for k, v in saved.items():  # every body tensor is the file's, the head is new
        if k != STEM[name] and not k.startswith(head):
            assert torch.equal(got[k], v), k
    assert model.get_classifier()(torch.zeros(1, model.num_features)).shape == (1, 7)
    rgb = create_model(name, pretrained=path, in_channels=3)
    assert torch.equal(rgb.state_dict()[STEM[name]], saved[STEM[name]])


@pytest.mark.parametrize("name", TRANSFER)
def test_gray_stem_equals_rgb_model_on_repeated_gray(name, tmp_path):
    path = tmp_path / "w.pth"
    torch.save(_torchvision(name).state_dict(), path)
    gray = create_model(name, pretrained=path).eval()
    rgb = create_model(name, pretrained=path, in_channels=3).eval()
    rgb.get_classifier().load_state_dict(gray.get_classifier().state_dict())
    x = small_input(name)
    with torch.no_grad():
        torch.testing.assert_close(gray(x), rgb(x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)


def test_pretrained_file_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "r.pth"
    torch.save(_torchvision("resnet18").state_dict(), path)
    with pytest.raises(CheckpointError, match=r"not a torchvision efficientnet_b0 state dict"):
        create_model("efficientnet_b0", pretrained=path)
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model("resnet18", pretrained=tmp_path / "missing.pth")


@pytest.mark.parametrize("name", TRANSFER)
def test_imagenet_without_network_says_to_pass_a_file(name, monkeypatch):
    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(ConfigError, match=r"ImageNet weights.*pretrained=PATH"):
        create_model(name, pretrained="imagenet")


@pytest.mark.parametrize("name", TRANSFER)
@pytest.mark.parametrize("policy", ["none", "head", "last_stage"])
def test_freeze_policies_leave_exactly_the_intended_parameters(name, policy):
    model = create_model(name, freeze=policy)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    every = {n for n, _ in model.named_parameters()}
    parts = {"none": ("",), "head": HEAD[name], "last_stage": HEAD[name] + LAST_STAGE[name]}
    assert trainable == {n for n in every if n.startswith(parts[policy])}
    assert trainable and (policy == "none" or trainable < every)
    # Frozen batch norm keeps its pretrained statistics while the rest trains.
    model.train()
    for mod_name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.training == any(p.requires_grad for p in m.parameters()), mod_name


def test_freeze_policy_errors():
    with pytest.raises(ConfigError, match=r"Valid: none, head, last_stage"):
        create_model("resnet18", freeze="body")
    with pytest.raises(ConfigError, match="no last stage"):
        freeze(create_model("simple_cnn"), "last_stage")
    model = freeze(create_model("simple_cnn"), "head")
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "head.weight",
        "head.bias",
    }


def test_param_groups_give_the_body_a_lower_learning_rate():
    model = create_model("resnet18", freeze="last_stage")
    groups = {g["name"]: g for g in param_groups(model, 1e-3, body_lr_scale=0.1)}
    assert groups["head"]["lr"] == 1e-3 and groups["body"]["lr"] == pytest.approx(1e-4)
    head_ids = {id(p) for p in model.fc.parameters()}
    assert {id(p) for p in groups["head"]["params"]} == head_ids
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    assert len(grouped) == len(set(grouped)) and set(grouped) == trainable
    torch.optim.AdamW(list(groups.values()))  # a valid optimizer argument
    head_only = param_groups(create_model("resnet18", freeze="head"), 1e-3, 0.1)
    assert [g["name"] for g in head_only] == ["head"]
