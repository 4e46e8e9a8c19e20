"""Training configuration and augmentation: config keys, recipes and their index, `--set`,
the batch augmentation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_args
from ferkit.cli import main
from ferkit.errors import ConfigError
from ferkit.training.augment import BatchAugment
from ferkit.training.config import TrainConfig, load_config, parse_set


def test_config_unknown_key_suggests_close_match(tmp_path):
    (tmp_path / "c.yaml").write_text("model: vgg_13\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown config key .learning_rate..*Valid: "):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        parse_set(["epoch=3"])


def test_model_kwargs_are_the_models_own_options_set_or_not():
    """model_kwargs reach the model unless a top-level key is set over them; a name the model
    does not have is refused even with no value (YAML's {widths:3} is the key 'widths:3')."""
    from ferkit.training.module import build_model

    def dropout(model):
        return next(m.p for m in model.modules() if isinstance(m, torch.nn.Dropout))

    assert (
        dropout(build_model(load_config(None, parse_set(["model_kwargs={dropout: 0.5}"])))) == 0.5
    )
    both = parse_set(["model_kwargs={dropout: 0.5}", "dropout=0.1"])
    assert dropout(build_model(load_config(None, both))) == 0.1
    with pytest.raises(ConfigError, match=r"unknown option 'widths:3'.*space after the colon"):
        build_model(load_config(None, parse_set(["model_kwargs={widths:3}"])))


def test_config_types_and_choices():
    cfg = load_config(
        None, parse_set(["lr=0.01", "hflip=false", "image_size=64", "model_kwargs={width: 8}"])
    )
    assert (cfg.lr, cfg.hflip, cfg.image_size, cfg.model_kwargs) == (0.01, False, 64, {"width": 8})
    recipe = Path(__file__).parents[1] / "configs" / "resnet18_transfer.yaml"
    assert load_config(recipe, parse_set(["pretrained=null"])).pretrained is None
    assert load_config(recipe, parse_set(["pretrained=w.pth"])).pretrained == "w.pth"
    with pytest.raises(ConfigError, match="'epochs' expects int"):
        load_config(None, {"epochs": "many"})
    with pytest.raises(ConfigError, match=r"unknown optimizer .adamx..*Did you mean .adam."):
        load_config(None, {"optimizer": "adamx"})
    with pytest.raises(ConfigError, match="Valid: none, exponential"):
        load_config(None, {"scheduler": "linear"})


def test_help_config_lists_every_key_with_its_default_and_comment(capsys):
    from ferkit.training.config import FIELDS

    assert main(["train", "--help-config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(FIELDS)
    undocumented = [line.split()[0] for line in lines if len(line.split()) < 3]
    assert undocumented == [], "every config key needs a one-line comment in TrainConfig"
    [tta] = [line for line in lines if line.startswith("teacher_tta ")]
    assert "'none'" in tta and "tencrop" in tta
    assert main(["train", "--help"]) == 0
    assert "peak learning rate [config key lr, default 0.001]" in capsys.readouterr().out


def test_config_extends_merges_base_under_recipe(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "a.yaml").write_text("model: vgg_13\nlr: 0.1\nepochs: 50\n")
    (tmp_path / "b.yaml").write_text("extends: base/a.yaml\nlr: 0.02\n")
    (tmp_path / "c.yaml").write_text("extends: b.yaml\nepochs: 5\n")
    cfg = load_config(tmp_path / "c.yaml", {"epochs": 7})
    assert (cfg.model, cfg.lr, cfg.epochs) == ("vgg_13", 0.02, 7)  # chain, then overrides
    (tmp_path / "loop.yaml").write_text("extends: loop2.yaml\n")
    (tmp_path / "loop2.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "typo.yaml").write_text("extend: b.yaml\n")
    with pytest.raises(ConfigError, match="Did you mean 'extends'"):
        load_config(tmp_path / "typo.yaml")
    (tmp_path / "orphan.yaml").write_text("extends: gone.yaml\n")
    with pytest.raises(ConfigError, match=r"gone.yaml \(extended by .*orphan.yaml\): no such"):
        load_config(tmp_path / "orphan.yaml")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"epochs: 5\nlr: 0.1\nlr: 0.01\n",
            r"line 3, column 1: 'lr' is given twice \(first on line 2\)",
        ),
        (b"\xff\xfe\x00\x89PNG", "not a text file; a recipe is YAML"),
        (b"#" * (2 << 20), "2 MiB, not a recipe"),
    ],
    ids=["a key twice", "binary", "oversized"],
)
def test_a_recipe_that_is_no_recipe_is_one_line(tmp_path, content, message):
    """PyYAML kept the last of two `lr:` lines silently; a binary file (an image passed as
    --config) was an internal UnicodeDecodeError; a video was read whole into memory first."""
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_config(recipe)


def test_a_merged_key_may_be_overridden(tmp_path):
    """YAML's merge key (<<) brings keys that the mapping may then set again: no duplicate."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_kwargs:\n  <<: {dropout: 0.1}\n  dropout: 0.3\nepochs: 2\n")
    assert load_config(recipe).epochs == 2


def test_recipes_load(capsys):
    for recipe in sorted(Path("configs").glob("*.yaml")):
        cfg = load_config(recipe)
        assert cfg.name and cfg.epochs > 0
        assert main(["train", "--config", str(recipe), "--smoke", "--dry-run"]) == 0
        assert json.loads(capsys.readouterr().out)["epochs"] == 1


def test_recipes_are_indexed():
    """configs/README.md names every recipe, so a newcomer finds what each is for."""
    index = Path("configs/README.md").read_text()
    missing = [r.stem for r in Path("configs").glob("*.yaml") if f"`{r.stem}`" not in index]
    assert not missing, f"configs/README.md does not list {missing}"


def test_cli_bad_model_lists_valid_names(tiny_data, tmp_path, capsys):
    assert main(tiny_args(tiny_data, tmp_path / "r", "--arch", "vgg_99")) == 2
    err = capsys.readouterr().err
    assert "vgg_99" in err and "simple_cnn" in err and "Traceback" not in err


def test_batch_augment_shapes_range_and_seed():
    x = torch.rand(16, 1, 48, 48)
    aug = BatchAugment(TrainConfig(crop_scale=0.6, erasing=0.5))
    torch.manual_seed(0)
    a = aug(x)
    torch.manual_seed(0)
    b = aug(x)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, x)
    off = TrainConfig(hflip=False, rotation=0, shift=0, scale=0, brightness=0, contrast=0)
    assert torch.allclose(BatchAugment(off)(x), x)


def test_hflip_only_mirrors():
    x = torch.rand(64, 1, 8, 8)
    cfg = TrainConfig(hflip=True, rotation=0, shift=0, scale=0, brightness=0, contrast=0)
    y = BatchAugment(cfg)(x)
    same = torch.isclose(y, x, atol=1e-5).flatten(1).all(1)
    mirrored = torch.isclose(y, x.flip(-1), atol=1e-5).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()
