"""Model catalogs: the choices a loader node offers, from the models folder and from packages.

Every loader answers the same question: "name → path: a file (or model folder) in
``models/<folder>`` first, else a model shipped with a package". A :class:`ModelCatalog`
answers it once for all of them::

    STYLES = ModelCatalog("style_models", (".safetensors",))
    STYLES.bundle(lambda: {"bundled/swirl": HERE / "embedded_style/swirl.safetensors"})

    STYLES.names()        # models-folder names, then bundled names not already listed
    STYLES.path(name)     # a models-folder entry of that name wins over the bundled one

Bundled sources are functions called at listing time (so a package installed later, or a
file missing from a broken installation, is seen without a restart); entries whose path does
not exist are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from .models import ModelFileError, find_model, list_models, resolve_model_path

BundledSource = Callable[[], Mapping[str, Path]]


class ModelCatalog:
    """The models of one models-folder subfolder, plus the ones packages ship for it."""

    def __init__(
        self,
        folder: str,
        suffixes: Iterable[str],
        *,
        is_model_folder: Callable[[Path], bool] | None = None,
    ):
        self.folder = folder
        self.suffixes = tuple(suffixes)
        self.is_model_folder = is_model_folder
        self._sources: list[BundledSource] = []

    def bundle(self, source: BundledSource | Mapping[str, Path]) -> None:
        """Offer models shipped with a package: ``source()`` maps choice names to paths."""
        self._sources.append(source if callable(source) else (lambda: source))

    def bundled(self) -> dict[str, Path]:
        """Every bundled name whose path exists → that path, in the order sources were added."""
        found: dict[str, Path] = {}
        for source in self._sources:
            for name, path in source().items():
                if name not in found and Path(path).exists():
                    found[name] = Path(path)
        return found

    def in_models_folder(self, name: str) -> bool:
        """True when a search folder of this kind has ``name`` (it then wins over a bundled
        model)."""
        try:
            return find_model(self.folder, name) is not None
        except ModelFileError:  # an escaping name or a dangling link: path() says which
            return True

    def names(self) -> list[str]:
        """Choices: the models folder's (sorted), then bundled ones not already listed."""
        found = list_models(self.folder, self.suffixes, is_model_folder=self.is_model_folder)
        listed = set(found)
        return found + [name for name in self.bundled() if name not in listed]

    def bundled_path(self, name: str) -> Path | None:
        """The bundled model's path, unless a models-folder entry of that name replaces it."""
        path = self.bundled().get(name)
        if path is None or self.in_models_folder(name):
            return None
        return path

    def path(self, name: str) -> Path:
        """Where model ``name`` is: the models folder first, else a bundled model.

        Raises ModelFileError (listing what is available) when it is neither.
        """
        bundled = self.bundled_path(name)
        if bundled is not None:
            return bundled
        return resolve_model_path(
            self.folder, name, suffixes=self.suffixes, is_model_folder=self.is_model_folder
        )
