"""PyTorch views of a loaded data set: a `Dataset` over the (memory-mapped) arrays and a
Lightning `DataModule` that serves train/val/test loaders.

Samples are uint8 tensors (1, H, W) with an int64 label; normalisation, resizing to the model's
input and augmentation happen on whole batches (see `ferkit.preprocess`), which is much faster
on a few CPU cores than per-image PIL transforms.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from ferkit.data.loader import load_dataset
from ferkit.data.types import FERData, Split, source_list
from ferkit.errors import DataError

log = logging.getLogger(__name__)


class FERDataset(Dataset):
    """One split as a map-style dataset of `(image uint8 (1, H, W), label)` pairs.

    With `soft_labels` present (FER+ votes), the target is the (C,) float distribution, mixed
    with the one-hot hard label (FER+'s majority, or FER-2013's own label with
    `fer2013-votes`) by `hard_label_weight` (0: the distribution alone).
    """

    def __init__(self, split: Split, hard_label_weight: float = 0.0):
        self.images = split.images
        self.labels = torch.as_tensor(np.asarray(split.labels), dtype=torch.int64)
        soft = split.soft_labels
        self.soft_labels = None if soft is None else torch.as_tensor(soft, dtype=torch.float32)
        if self.soft_labels is not None and hard_label_weight > 0:
            hard = F.one_hot(self.labels, self.soft_labels.shape[1]).float()
            w = hard_label_weight
            self.soft_labels = (1 - w) * self.soft_labels + w * hard

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(np.array(self.images[index], copy=True)).unsqueeze(0)
        target = self.labels[index] if self.soft_labels is None else self.soft_labels[index]
        return image, target


def holdout_split(
    split: Split, fraction: float, seed: int, source: str = "the data"
) -> tuple[Split, Split]:
    """Stratified random holdout: (rest, held out), `fraction` of each class held out.

    Raises:
        DataError: no class has two images, so none can be held out (`source` names the data).
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(split.labels)
    held = [
        rng.permutation(idx)[: max(1, round(fraction * len(idx)))]
        for c in np.unique(labels)
        if len(idx := np.flatnonzero(labels == c)) > 1
    ]
    if not held:
        raise DataError(
            f"{source}: {len(labels)} training image(s) and no class with two, so none can be "
            "held out for validation; add images, or give a val/ (or test/) split"
        )
    held = np.concatenate(held)
    mask = np.zeros(len(labels), bool)
    mask[held] = True

    def take(m: np.ndarray) -> Split:
        soft = None if split.soft_labels is None else split.soft_labels[m]
        return Split(np.asarray(split.images[m]), labels[m], soft)

    return take(~mask), take(mask)


def _warn_missing_classes(source, train: Split, labels: tuple[str, ...]) -> None:
    """Say which emotions have no training image: the model would never learn to answer them."""
    absent = [name for name, n in train.class_counts(labels).items() if n == 0]
    if absent:
        log.warning(
            "%s: no training images of %s (%d of %d classes); the model will not learn them",
            source,
            ", ".join(absent),
            len(absent),
            len(labels),
        )


def balanced_sampler(labels: np.ndarray, seed: int) -> WeightedRandomSampler:
    """Draws each class equally often (disgust has 436 of FER-2013's 28,709 training images)."""
    counts = np.bincount(labels)
    weights = 1.0 / counts[labels]
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(
        weights.tolist(), len(labels), replacement=True, generator=generator
    )


class FERDataModule(L.LightningDataModule):
    """Train/val/test loaders over any supported source.

    Without a `val` split (a class-folder tree, a CSV without Usage), a stratified
    `val_fraction` of the training data is held out, with `seed`. `ferplus` names FER+ labels
    for a FER-2013 CSV (see `load_dataset`). `extra_train` names more sources whose training
    faces (their train split, or all of an unsplit source) join `path`'s; their validation and
    test splits are not used, so validation and test stay `path`'s. `extra_val` names sources
    whose validation split is validated on after `path`'s (`val_dataloader` returns a list):
    the same faces in other pixels, for instance, so that a model is chosen on both.
    """

    def __init__(
        self,
        path: str,
        *,
        image_size: int = 48,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        balanced: bool = False,
        val_fraction: float = 0.1,
        limit: int | None = None,
        seed: int = 0,
        strict: bool = False,
        skip_bad: bool = False,
        ferplus: str | None = None,
        ferplus_labels: str = "votes",
        hard_label_weight: float = 0.0,
        extra_train: str | Sequence[str] = (),
        extra_val: str | Sequence[str] = (),
    ):
        super().__init__()
        self.path, self.image_size, self.seed = path, image_size, seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.balanced = num_workers, balanced
        self.val_fraction, self.limit = val_fraction, limit
        self.strict, self.skip_bad = strict, skip_bad
        self.ferplus, self.ferplus_labels = ferplus, ferplus_labels
        self.hard_label_weight = hard_label_weight
        self.extra_train, self.extra_val = source_list(extra_train), source_list(extra_val)
        self.data: FERData | None = None
        self.splits: dict[str, Split] = {}
        self.extra_val_splits: list[Split] = []  # one per `extra_val` source, in its order

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.data = load_dataset(
            self.path,
            image_size=self.image_size,
            strict=self.strict,
            skip_bad=self.skip_bad,
            ferplus=self.ferplus,
            ferplus_labels=self.ferplus_labels,
        )
        splits = {k: v for k, v in self.data.splits.items() if len(v)}
        train = splits.pop("train", None) or splits.pop("all", None)
        if train is None:
            raise DataError(f"{self.path}: no training images (splits: {', '.join(splits)})")
        if "val" not in splits:
            train, splits["val"] = holdout_split(
                train, self.val_fraction, self.seed, str(self.path)
            )
        train = splits["train"] = self._with_extra(train)
        _warn_missing_classes(self.path, train, self.data.labels)
        extra_val = [self._extra_split("extra_val", path) for path in self.extra_val]
        if self.limit:  # a stratified subset, for smoke runs
            splits = {k: _subset(v, self.limit, self.seed) for k, v in splits.items()}
            extra_val = [_subset(v, self.limit, self.seed) for v in extra_val]
        self.splits, self.extra_val_splits = splits, extra_val

    def _with_extra(self, train: Split) -> Split:
        """`train` followed by the training faces of each `extra_train` source."""
        parts = [train, *(self._extra_split("extra_train", path) for path in self.extra_train)]
        if len(parts) == 1:
            return train
        soft = None
        if train.soft_labels is not None:  # hard-labelled sources join as one-hot rows
            eye = np.eye(train.soft_labels.shape[1], dtype=np.float32)
            soft = np.concatenate(
                [eye[p.labels] if p.soft_labels is None else p.soft_labels for p in parts]
            )
        return Split(
            np.concatenate([p.images for p in parts]),
            np.concatenate([p.labels for p in parts]),
            soft,
        )

    def _extra_split(self, key: str, path: str) -> Split:
        """The faces an `extra_train` source adds to training (its train split, or all of an
        unsplit source) or an `extra_val` source to validation (its val split), with the
        labels of `path`."""
        try:
            extra = load_dataset(
                path, image_size=self.image_size, strict=self.strict, skip_bad=self.skip_bad
            )
        except DataError as exc:
            raise DataError(f"{key}: {exc}") from None
        if extra.labels != self.data.labels:
            raise DataError(
                f"{key} {path}: its labels ({', '.join(extra.labels)}) are not those "
                f"of {self.path} ({', '.join(self.data.labels)})"
            )
        if key == "extra_val":
            faces, what = extra.splits.get("val"), "validation faces (a val split: PublicTest"
            what += " rows or files, or a validation/ folder)"
        else:
            faces = extra.splits.get("train") or extra.splits.get("all")
            what = "training faces (a train/ split)"
        if faces is None or not len(faces):
            has = ", ".join(k for k, v in extra.splits.items() if len(v)) or "none"
            raise DataError(f"{key} {path}: no {what}; its splits: {has}")
        log.info("%s %s: %d faces", key, path, len(faces))
        return faces

    def _loader(self, name: str | Split, train: bool) -> DataLoader:
        split = self.splits[name] if isinstance(name, str) else name
        dataset = FERDataset(split, self.hard_label_weight if train else 0.0)
        sampler = (
            balanced_sampler(np.asarray(split.labels), self.seed)
            if train and self.balanced
            else None
        )
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """`path`'s val split; with `extra_val`, a list: it, then each extra source's."""
        if not self.extra_val_splits:
            return self._loader("val", train=False)
        return [self._loader(s, train=False) for s in [self.splits["val"], *self.extra_val_splits]]

    def test_dataloader(self) -> DataLoader:
        return self._loader("test" if "test" in self.splits else "val", train=False)


def _subset(split: Split, n: int, seed: int) -> Split:
    if len(split) <= n:
        return split
    _, small = holdout_split(split, n / len(split), seed)
    return small
