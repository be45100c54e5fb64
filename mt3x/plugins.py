"""The registry through which packages built on mt3x add capabilities to mt3x's tools.

mt3x imports nothing of the packages built on it (`separation`, `tagging`); they import mt3x. A
package that wants a place in mt3x's own command lines declares a plugin, a function
`register(registry: Registry) -> None`, under the entry-point group `mt3x.plugins`:
```
setup(..., entry_points={"mt3x.plugins": ["separation = separation.plugin:register"]})
```
`load_registry()` calls every declared plugin once. Two capabilities exist:

- a bundle exporter (`Registry.add_bundle_exporter`): a run-directory kind, recognised by a marker
  file in the directory (`separator.json`), and the function that writes its inference bundle;
  `mt3x-export` tries the registered kinds before falling back to an MT3 work directory;
- a demo stage (`Registry.add_demo_stage`): a named stage `mt3x-demo` runs after its own ones
  (the separators' `separate`), given a `DemoContext`.

mt3x also knows which package provides the capabilities it ships with (`KNOWN_BUNDLE_KINDS`,
`KNOWN_DEMO_STAGES`), so when that package is not installed (or its plugin fails to load), the
tools say which package is missing instead of misreading the directory or the stage.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from mt3x.errors import Mt3xError

ENTRY_POINT_GROUP = "mt3x.plugins"


class PluginError(Mt3xError):
    """A capability was asked for that no installed plugin provides, or was registered twice."""


class ExportFunction(Protocol):
    """Writes the inference bundle of a run directory; returns the bundle folder.

    Raises Mt3xError (naming the path) for a missing or partial run directory, a bad dtype or
    platform, or an existing `out` without `overwrite`.
    """

    def __call__(self, checkpoint_dir: Path, out: Path, *, dtype: str, step: int | None,
                 platforms: tuple[str, ...], overwrite: bool) -> Path: ...


@dataclasses.dataclass(frozen=True)
class BundleExporter:
    """How `mt3x-export` recognises one kind of run directory and exports it.

    Attributes:
      kind: the bundle kind written ('separator'); also names the run kind in messages.
      marker: a file name whose presence in a directory makes it a run of this kind.
      export: writes the bundle (see `ExportFunction`).
      provider: the plugin (entry-point name) that registered it.
    """

    kind: str
    marker: str
    export: ExportFunction
    provider: str

    def recognises(self, directory: Path) -> bool:
        """Whether `directory` holds this kind's marker file."""
        return (directory / self.marker).is_file()


@dataclasses.dataclass(frozen=True)
class DemoContext:
    """What a demo stage gets: `out` (the demo's output folder), `data_root` (the demo dataset in
    Slakh2100 layout, written by the `data` stage), the seed, the `--steps` override (None: the
    stage's own default) and `ood_root` (a tiny out-of-domain set, all in `test`, that stages
    score side by side with `data_root`'s test split; None when the demo has none)."""

    out: Path
    data_root: Path
    seed: int
    steps: int | None = None
    ood_root: Path | None = None


@dataclasses.dataclass(frozen=True)
class DemoStage:
    """A stage of `mt3x-demo` that a plugin adds: `run(context)` prints its own `[demo]` lines."""

    name: str
    description: str
    run: Callable[[DemoContext], None]
    provider: str


@dataclasses.dataclass(frozen=True)
class KnownCapability:
    """A capability mt3x ships with, provided by a package it must not import.

    `marker` is the run-directory marker file of a bundle kind ('' for a demo stage).
    """

    name: str
    package: str
    marker: str = ""


KNOWN_BUNDLE_KINDS: tuple[KnownCapability, ...] = (
    KnownCapability("separator", package="separation", marker="separator.json"),
)
KNOWN_DEMO_STAGES: tuple[KnownCapability, ...] = (
    KnownCapability("separate", package="separation"),
)


class Registry:
    """The capabilities registered by plugins, and the plugins that failed to load."""

    def __init__(self) -> None:
        self.bundle_exporters: dict[str, BundleExporter] = {}
        self.demo_stages: dict[str, DemoStage] = {}
        self.failed: dict[str, str] = {}      # entry-point name -> "ErrorType: message"
        self._provider = "<direct>"

    def add_bundle_exporter(self, kind: str, marker: str, export: ExportFunction) -> None:
        """Registers the exporter of run directories holding `marker` (bundle kind `kind`)."""
        if kind in self.bundle_exporters or kind == "mt3":
            raise PluginError(f"plugin {self._provider}: a bundle exporter for kind {kind!r} is "
                              "already registered")
        self.bundle_exporters[kind] = BundleExporter(kind, marker, export, self._provider)

    def add_demo_stage(self, name: str, description: str,
                       run: Callable[[DemoContext], None]) -> None:
        """Registers a demo stage run after mt3x's own ones, in registration order."""
        if name in self.demo_stages:
            raise PluginError(f"plugin {self._provider}: demo stage {name!r} is already "
                              "registered")
        self.demo_stages[name] = DemoStage(name, description, run, self._provider)

    def register_plugin(self, name: str, register: Callable[["Registry"], None]) -> None:
        """Runs one plugin's `register` with `name` recorded as the provider of what it adds."""
        self._provider = name
        try:
            register(self)
        finally:
            self._provider = "<direct>"

    def exporter_for(self, directory: Path) -> BundleExporter | None:
        """The registered exporter whose marker `directory` holds, or None.

        Raises PluginError when `directory` holds the marker of a known kind whose package is
        not installed (or whose plugin failed to load).
        """
        for exporter in self.bundle_exporters.values():
            if exporter.recognises(directory):
                return exporter
        for known in KNOWN_BUNDLE_KINDS:
            if known.name not in self.bundle_exporters and (directory / known.marker).is_file():
                raise PluginError(f"{directory} looks like a {known.name} run (it holds "
                                  f"{known.marker}) but {self.missing(known.package)}")
        return None

    def demo_stage(self, name: str) -> DemoStage:
        """The registered demo stage `name`.

        Raises PluginError naming the missing package for a known stage, else listing the
        registered ones.
        """
        if name in self.demo_stages:
            return self.demo_stages[name]
        for known in KNOWN_DEMO_STAGES:
            if known.name == name:
                raise PluginError(f"demo stage {name!r} needs the {known.package} package: "
                                  f"{self.missing(known.package)}")
        raise PluginError(f"no plugin provides demo stage {name!r}; registered: "
                          f"{sorted(self.demo_stages)}")

    def markers(self) -> list[str]:
        """Marker files of every registered and known bundle kind, for messages."""
        names = [e.marker for e in self.bundle_exporters.values()]
        return names + [k.marker for k in KNOWN_BUNDLE_KINDS if k.marker not in names]

    def missing(self, package: str) -> str:
        """Why `package`'s capabilities are absent: not installed, or its plugin failed to load."""
        if package in self.failed:
            return f"the {package} plugin failed to load ({self.failed[package]})"
        return f"the {package} package is not installed"


def load_registry(entry_points: Iterable[importlib.metadata.EntryPoint] | None = None
                  ) -> Registry:
    """A registry filled by every plugin declared under `ENTRY_POINT_GROUP` (or `entry_points`).

    A plugin that cannot be imported or whose `register` raises is recorded in
    `Registry.failed` (by entry-point name) rather than breaking the tools that do not need it.
    """
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    registry = Registry()
    for entry in entry_points:
        try:
            registry.register_plugin(entry.name, entry.load())
        except Exception as err:  # noqa: BLE001 - any failure of a plugin is reported, not raised
            registry.failed[entry.name] = f"{type(err).__name__}: {err}"
    return registry


@functools.cache
def installed_registry() -> Registry:
    """`load_registry()` of the installed plugins, loaded once per process."""
    return load_registry()
