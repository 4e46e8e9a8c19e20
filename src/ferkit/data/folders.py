"""Image-folder data sets: find the layout, list (file, label, split) without decoding.

Layouts, matched case-insensitively:
- Kaggle msambare FER-2013: `train/` and `test/` with class subfolders. Files in `test/` named
  `PublicTest_*` are the `val` split and `PrivateTest_*` the `test` split; other files in
  `test/` are `test`.
- `train/` + `validation/` (or `val/`, `valid/`), optionally with `test/`; or any of these
  split folders alone (`train/` only, `val/` + `test/`, ...), as `ferkit data convert
  --format folder` writes a source with fewer splits. `test/` without a validation folder is
  read as msambare's.
- Any folder of class subfolders: one split, `all`.
Class folder names go through the alias map (`anger`, `Happiness`, `3_happy`, ...).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ferkit.errors import DataError
from ferkit.files import skipped_note, unreadable, walk_files
from ferkit.imaging import IMAGE_SUFFIXES
from ferkit.labels import EMOTIONS, map_class_names

log = logging.getLogger(__name__)

# The table `ferkit data crop` writes beside the class folders it makes: no stray file
CROP_LOG = "crops.csv"

VAL_FOLDERS = ("validation", "val", "valid")
SPLIT_FOLDERS = ("train", "test", *VAL_FOLDERS)


@dataclass
class FolderPlan:
    """What a folder holds: files with their label and split, before any decoding."""

    root: Path
    kind: str
    files: list[tuple[str, int, str]] = field(default_factory=list)  # (path, label, split)
    splits: list[str] = field(default_factory=list)
    ignored_classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    other_files: list[Path] = field(default_factory=list)  # not image types


def _folders(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.iterdir()) if p.is_dir()]


def _subdirs(folder: Path) -> dict[str, Path]:
    """The subfolders by lower-case name, to find the split layout (train/, Test/, ...)."""
    found: dict[str, Path] = {}
    for p in _folders(folder):
        other = found.setdefault(p.name.lower(), p)
        if other is not p and p.name.lower() in SPLIT_FOLDERS:
            raise DataError(
                f"{folder}: {other.name}/ and {p.name}/ differ only in case, so which split each "
                "is cannot be told; merge them or rename one"
            )
    return found


def image_files(folder: Path, others: list[Path] | None = None) -> list[Path]:
    """The image files under `folder` and its subfolders (linked ones too), in a stable
    (sorted) order; hidden files are skipped, and so is anything that is not a regular file
    (a broken link; a FIFO named x.png would block the decoder forever), with a warning
    naming it. Files of other types are added to `others`, if given."""
    found = []
    for path in walk_files(folder):
        if path.name.startswith("."):
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            if others is not None:
                others.append(path)
            continue
        if why := unreadable(path):
            log.warning("%s: %s; skipped", path, why)
        else:
            found.append(path)
    return found


def _scan_classes(split_dir: Path, plan: FolderPlan, strict: bool) -> list[tuple[Path, int]]:
    """(file, label) for every image in the class subfolders of one split folder."""
    classes = _folders(split_dir)  # Happy/ and happy/ both: one class, as aliases are
    if not classes:
        raise DataError(
            f"{split_dir}: no class subfolders; expected one folder per emotion "
            f"(for example {split_dir}/happy/*.jpg) with names like {', '.join(EMOTIONS)}"
        )
    names = [p.name for p in classes]
    known = map_class_names(names, strict=strict, where=str(split_dir))
    if not known:
        raise DataError(
            f"{split_dir}: none of its subfolders ({', '.join(names)}) maps to an emotion; "
            f"expected names like {', '.join(EMOTIONS)} (or aliases such as anger, sadness)"
        )
    plan.ignored_classes += sorted(f"{split_dir.name}/{n}" for n in set(names) - set(known))
    loose = [
        f.name
        for f in split_dir.iterdir()
        if f.is_file() and not f.name.startswith(".") and f.name != CROP_LOG
    ]
    if loose:
        log.warning(
            "%s: %d file(s) outside class folders ignored (e.g. %s)",
            split_dir,
            len(loose),
            loose[0],
        )
    return [
        (f, known[p.name])
        for p in classes
        if p.name in known
        for f in image_files(p, plan.other_files)
    ]


def _msambare_split(name: str) -> str:
    if name.startswith("PublicTest_"):
        return "val"
    return "test"


def plan_folder(root: Path, *, strict: bool = False) -> FolderPlan:
    """Work out the layout of `root` and list its images with labels and splits."""
    plan = _plan(root, strict)
    if plan.other_files:  # said once, not dropped unsaid
        plan.notes.append(f"{skipped_note(plan.other_files)} in the class folders: not images")
    return plan


def _plan(root: Path, strict: bool) -> FolderPlan:
    subdirs = _subdirs(root)
    val_dir = next((subdirs[n] for n in VAL_FOLDERS if n in subdirs), None)
    only_splits = bool(subdirs) and set(subdirs) <= set(SPLIT_FOLDERS)
    if only_splits or ("train" in subdirs and (val_dir or "test" in subdirs)):
        kind = "msambare" if "test" in subdirs and not val_dir else "train_validation"
        plan = FolderPlan(root, kind, splits=["train", "val", "test"])
        if "train" in subdirs:
            plan.files += [
                (str(f), y, "train") for f, y in _scan_classes(subdirs["train"], plan, strict)
            ]
        if val_dir:
            plan.files += [(str(f), y, "val") for f, y in _scan_classes(val_dir, plan, strict)]
        if "test" in subdirs:
            split_of = _msambare_split if kind == "msambare" else (lambda _: "test")
            plan.files += [
                (str(f), y, split_of(f.name))
                for f, y in _scan_classes(subdirs["test"], plan, strict)
            ]
        counts = {s: sum(1 for *_, sp in plan.files if sp == s) for s in plan.splits}
        if kind == "msambare" and counts["val"] and not counts["test"]:
            plan.notes.append(
                "test/ holds only PublicTest_* files: they are the val split, and test is empty"
            )
        if kind == "msambare" and counts["test"] and not counts["val"]:
            plan.notes.append(
                "test/ holds no PublicTest_* files: val is empty; all of test/ is the test split"
            )
        if "train" in subdirs and not counts["train"]:
            raise DataError(f"{subdirs['train']}: no images in its class subfolders")
        return plan
    if not subdirs:
        files = [f.name for f in root.iterdir() if f.is_file()]
        what = (
            f"only files ({', '.join(files[:3])}{', ...' if len(files) > 3 else ''})"
            if files
            else "nothing"
        )
        raise DataError(
            f"{root}: holds {what}; expected class subfolders (happy/, sad/, ...), a "
            "train/ + test/ (or validation/) layout, or pass a FER-2013 CSV file"
        )
    plan = FolderPlan(root, "class_folders", splits=["all"])
    plan.files = [(str(f), y, "all") for f, y in _scan_classes(root, plan, strict)]
    return plan
