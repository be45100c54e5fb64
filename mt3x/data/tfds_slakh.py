"""A tensorflow-datasets builder that turns a Slakh2100-layout folder into TFRecords.

Each example: `audio` (float32[samples], the mix at 16 kHz), `sequence` (a serialized
`note_seq.NoteSequence` of every rendered stem: `mt3x.data.slakh.track_note_sequence`, the same
notes training and evaluation use),
`track_id` and `split`. Splits are the folder's split folders that hold tracks.

```
from mt3x.data.tfds_slakh import prepare_slakh_tfds
builder = prepare_slakh_tfds('data/demo', data_dir='data/tfds')
ds = builder.as_dataset(split='train')
```
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG
from mt3x.data.slakh import SPLIT_NAMES, DatasetError, list_track_dirs, read_track


class SlakhLayout(tfds.core.GeneratorBasedBuilder):
    """Any Slakh2100-layout folder (pass it as `manual_dir`) as TFRecords."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Mix at 16 kHz + serialized NoteSequence + track id."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the dataset root (with train/ validation/ test/) as manual_dir."

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "audio": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                "sequence": tfds.features.Tensor(shape=(), dtype=np.str_),
                "track_id": tfds.features.Text(),
                "split": tfds.features.Text(),
            }),
            supervised_keys=None,
            description=__doc__,
        )

    def _split_generators(self, dl_manager):
        root = Path(dl_manager.manual_dir)
        splits = {split: self._generate_examples(root, split)
                  for split in SPLIT_NAMES if list_track_dirs(root, split)}
        if not splits:
            raise DatasetError(f"{root}: no Slakh2100-layout split with Track* folders")
        return splits

    def _generate_examples(self, root: Path, split: str):
        for track_dir in list_track_dirs(root, split):
            track = read_track(track_dir)
            sequence = track.note_sequence()
            yield f"{split}/{track.track_id}", {
                "audio": track.load_mix(sample_rate=MT3_SPECTROGRAM_CONFIG.sample_rate),
                "sequence": sequence.SerializeToString(),
                "track_id": track.track_id,
                "split": split,
            }


def prepare_slakh_tfds(slakh_root: str | os.PathLike, data_dir: str | os.PathLike) -> SlakhLayout:
    """Writes TFRecords for `slakh_root` under `data_dir` (once) and returns the builder."""
    builder = SlakhLayout(data_dir=str(data_dir))
    config = tfds.download.DownloadConfig(manual_dir=str(slakh_root))
    builder.download_and_prepare(download_config=config)
    return builder
