"""What a run was trained on, and what the published numbers were trained on: so that a report
never sets a 256-image, 1-epoch run beside the seed's 200-epoch number without saying so.

    s = setting_of(config)        # TrainSetting: data set, images used of the split, epochs, recipe
    images_cell(s.train)          # "256 of 50,000" or "50,000 (all)"
    published_setting("seed")     # "full data, 200 epochs"

Images used = what the run loaded, where its summary.json records it (`train_images`,
`test_images`); else min(limit_train, size of the split) (`load_dataset` takes the first N), the
whole split when there is no limit. Published settings, by `published_source`:
- "seed": the seed's README table, single runs on the full CIFAR-10 training set, 200 epochs.
- "paper": Hahn & Choi (arXiv:1806.09783) on the full data sets; the paper states no epoch count
  for its tables, so none is claimed.
A published number without a source is taken as full data, epochs unknown.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..activations.describe import short_number
from ..data import dataset_info
from ..errors import UserError

#: published_source → epochs of the published runs (None: not stated)
PUBLISHED_EPOCHS: dict[str | None, int | None] = {"seed": 200, "paper": None, None: None}


@dataclass(frozen=True)
class Images:
    """Images of one split: `used` of `total` (either None when unknown)."""

    used: int | None
    total: int | None

    @property
    def subset(self) -> bool:
        return self.used is not None and self.total is not None and self.used < self.total


@dataclass(frozen=True)
class TrainSetting:
    """The settings a reader needs to compare two accuracies; every field as its table cell."""

    dataset: str
    train: Images
    test: Images
    epochs: int | None
    preset: str
    optimizer: str
    lr: str
    batch_size: str
    augment: str  # "crop+flip", or "none"


def setting_of(config: Mapping[str, Any], summary: Mapping[str, Any] | None = None) -> TrainSetting:
    """The TrainSetting of a resolved train config (config.json's `config`); unknown fields read "?".
    With a run's summary (summary.json) that records the images it loaded (`train_images`,
    `test_images`), those are the images used: a data directory holding fewer images than the
    official split then reads as the subset it was."""
    dataset = str(config.get("dataset", "?"))
    try:
        info = dataset_info(dataset)
        totals: tuple[int | None, int | None] = (info.n_train, info.n_test)
    except UserError:  # a data set this version does not know: sizes unknown
        totals = (None, None)
    epochs = config.get("epochs")
    augment = config.get("augment")
    return TrainSetting(
        dataset=dataset,
        train=_images(config.get("limit_train"), totals[0], loaded_count(summary, "train_images")),
        test=_images(config.get("limit_test"), totals[1], loaded_count(summary, "test_images")),
        epochs=int(epochs) if isinstance(epochs, (int, float)) and not isinstance(epochs, bool) else None,
        preset=str(config.get("preset", "?")),
        optimizer=str(config.get("optimizer", "?")),
        lr=short_number(config.get("lr", "?")),
        batch_size=str(config.get("batch_size", "?")),
        augment=("+".join(map(str, augment)) or "none") if isinstance(augment, (list, tuple)) else "?",
    )


def loaded_count(summary: Mapping[str, Any] | None, key: str) -> int | None:
    """summary[key] where it is a count of images (a non-negative int), else None."""
    value = summary.get(key) if summary else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _images(limit: Any, total: int | None, loaded: int | None = None) -> Images:
    if loaded is not None:  # what the run itself loaded; more than the official split: a total unknown
        return Images(loaded, total if total is not None and loaded <= total else None)
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        return Images(limit if total is None else min(limit, total), total)
    return Images(total, total)


def images_cell(images: Images) -> str:
    """`256 of 50,000`, `50,000 (all)`, or `?`."""
    if images.used is None:
        return "?"
    if images.total is None:
        return f"{images.used:,}"
    return f"{images.used:,} of {images.total:,}" if images.subset else f"{images.total:,} (all)"


def published_setting(source: str | None) -> str:
    """What the published number was trained on: `full data, 200 epochs` (seed), `full data` (paper)."""
    epochs = PUBLISHED_EPOCHS.get(source)
    return "full data" + (f", {epochs} epochs" if epochs else "")


def common_settings(settings: Sequence[TrainSetting], only: "Sequence[str] | None" = None) -> tuple[str, list[str]]:
    """(one sentence of the settings every run shares, names of the settings that differ between runs);
    `only`: these settings (names as in SETTING_NAMES), else all."""
    same, differ = [], []
    for name, phrase in _PHRASES:
        if only is not None and name not in only:
            continue
        values = {phrase(s) for s in settings}
        if len(values) == 1:
            same.append(values.pop())
        else:
            differ.append(name)
    return ", ".join(same), differ


_PHRASES = (
    ("dataset", lambda s: s.dataset),
    ("train images", lambda s: f"{images_cell(s.train)} training images"),
    ("test images", lambda s: f"{images_cell(s.test)} test images"),
    ("epochs", lambda s: f"{s.epochs if s.epochs is not None else '?'} epoch{'' if s.epochs == 1 else 's'}"),
    ("preset", lambda s: f"preset {s.preset}"),
    ("optimizer", lambda s: f"optimizer {s.optimizer}"),
    ("lr", lambda s: f"lr {s.lr}"),
    ("batch size", lambda s: f"batch size {s.batch_size}"),
    ("augment", lambda s: "no augmentation" if s.augment == "none" else f"augmentation {s.augment}"),
)
#: the settings `common_settings` names, in the order it says them
SETTING_NAMES = tuple(name for name, _ in _PHRASES)


def shortfall(setting: TrainSetting, source: str | None) -> str:
    """How `setting` falls short of the published one: `256 of 50,000 training images and 1 of 200
    epochs`; "" when it does not (or it cannot be told)."""
    parts = []
    if setting.train.subset:
        parts.append(f"{setting.train.used:,} of {setting.train.total:,} training images")
    epochs = PUBLISHED_EPOCHS.get(source)
    if epochs and setting.epochs is not None and setting.epochs < epochs:
        parts.append(f"{setting.epochs} of {epochs} epochs")
    if setting.test.subset:
        parts.append(f"{setting.test.used:,} of {setting.test.total:,} test images")
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def comparability_warning(runs: Sequence[tuple[str, TrainSetting, str | None]]) -> str:
    """One line above the table when runs with a published number were trained on less than the
    published setting; `runs`: (name, setting, published_source) of the runs that have one."""
    groups: dict[str, list[str]] = {}
    for name, setting, source in runs:
        gap = shortfall(setting, source)
        if gap:
            groups.setdefault(gap, []).append(name)
    if not groups:
        return ""
    if len(groups) == 1 and len(next(iter(groups.values()))) == len(runs):
        said = f"these runs use {next(iter(groups))}"
    else:
        said = "; ".join(f"{', '.join(f'`{n}`' for n in names)} use{'s' if len(names) == 1 else ''} {gap}"
                         for gap, names in groups.items())  # fmt: skip
    return f"**Warning:** {said}: not comparable with the published column."
