"""mt3x.data: datasets in Slakh2100's layout — the synthetic builder and the reader.

Reader (light imports): `read_track`, `read_split`, `SlakhTrack`, `SlakhStem`, `DatasetError`.
Builder: `mt3x.data.builder.build(BuildConfig, out_dir)`, presets in `mt3x.data.presets`
(`build_demo(out_dir, seed=0)`), CLI `mt3x-data`.
"""

from mt3x.data.slakh import DatasetError, SlakhStem, SlakhTrack, read_split, read_track

__all__ = ["DatasetError", "SlakhStem", "SlakhTrack", "read_split", "read_track"]
