"""The study index as the window's views see it: typed rows out, edits and imports in. No Qt.

The Qt layer never opens the SQLite index itself (an import-linter contract
forbids it): the browser, the notes panel, the report panel and the window ask a
``Catalog`` for ``StudyRow``/``SeriesRow``/``NoteRow`` values and hand it their
edits. Every call opens its own short connection, so a ``Catalog`` may be used
from the GUI thread and from a job runner's thread alike (SQLite connections are
per thread). Nothing here logs patient names, IDs or note text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workstation.dicomio.headers import InstanceHeader
    from workstation.index.db import StudyIndex
    from workstation.index.importer import ImportResult
    from workstation.index.rows import NoteRow, SeriesRow, StudyRow
    from workstation.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listing:
    """Everything the study browser shows: studies, series, and which series have a stored analysis."""

    studies: list[StudyRow]
    series: list[SeriesRow]
    analysed: frozenset[int] | None  # None: the analysis store could not be read (keep what is shown)


@dataclass(frozen=True)
class NoteEdit:
    """A note as the reader left it: ``note_id`` None for a new typed note."""

    note_id: int | None
    text: str


class Catalog:
    """Reads and writes the study index for the views; see the module docstring.

    ``settings`` (optional) adds what needs more than the index: the analysis
    store (``listing``'s "analysed"), the import workers and the demo study.
    """

    def __init__(self, db_path: Path, settings: Settings | None = None) -> None:
        self.db_path = Path(db_path)
        self.settings = settings
        self._remote_nodes: tuple[str, ...] | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> Catalog:
        """The catalog of the settings' study index."""
        return cls(settings.db_path, settings)

    @contextmanager
    def index(self) -> Iterator[StudyIndex]:
        """A connection to the index for several reads in a row (services only; closed on exit)."""
        from workstation.index.db import StudyIndex

        with StudyIndex(self.db_path) as index:
            yield index

    @property
    def thumbnails_dir(self) -> Path:
        """Where series thumbnails are cached (the data folder's ``thumbnails``, else beside the index)."""
        root = self.settings.data_dir if self.settings is not None else self.db_path.parent
        return root / "thumbnails"

    # --- studies and series -------------------------------------------------------------
    def listing(self) -> Listing:
        """Every study and series, and the series the analysis store holds a valid analysis of."""
        with self.index() as index:
            studies, series = index.studies(), index.series()
            analysed = self._analysed(index, series)
        return Listing(studies, series, analysed)

    def _analysed(self, index: StudyIndex, rows: list[SeriesRow]) -> frozenset[int] | None:
        if self.settings is None:
            return frozenset()
        from workstation.services.analysis_store import AnalysisStore, analysed_series, model_versions
        from workstation.services.remote_models import remote_models

        settings = self.settings
        if self._remote_nodes is None:  # parsed once (a bad node is warned about once, not at every refresh)
            self._remote_nodes = tuple(remote_models(settings).nodes)
        nodes = self._remote_nodes  # their models' analyses count too (no node is contacted)
        try:
            return frozenset(
                analysed_series(
                    AnalysisStore.for_settings(settings), index, rows,
                    lambda: model_versions(settings.models_path, nodes)
                )
            )
        except Exception:  # an unreadable store must not empty the browser
            logger.warning("the analysis store could not be read", exc_info=True)
            return None

    def series_row(self, series_id: int) -> SeriesRow | None:
        """One series by its index id (None if unknown)."""
        with self.index() as index:
            return index.find_series(str(series_id))

    def study_of_series(self, series_id: int) -> StudyRow | None:
        """The study an indexed series belongs to (None if the series is unknown)."""
        with self.index() as index:
            row = index.find_series(str(series_id))
            return index.study(row.study_id) if row is not None else None

    def study_by_key(self, study_key: str) -> StudyRow | None:
        """The study with this key (StudyInstanceUID or the index's substitute); None if not indexed."""
        with self.index() as index:
            return index.study_by_key(study_key)

    def study_title(self, study_key: str) -> str:
        """How a reader knows a study: "DOE, Jane – CT CHEST – 2024-03-01" ('' when not indexed). Never logged."""
        from workstation.dicomio.display import dicom_date, person_name

        study = self.study_by_key(study_key)
        if study is None:
            return ""
        parts = (person_name(study.patient.name), study.description, dicom_date(study.date))
        return " – ".join(p for p in parts if p)

    def series_details(self, series_id: int) -> dict[str, Any]:
        """One series as the command line's JSON (geometry, kind, quality checks) for the details pane."""
        from workstation.services.studies import series_json

        with self.index() as index:
            return series_json(index, series_id)

    def series_headers(self, series_id: int) -> list[InstanceHeader]:
        """The stored DICOM headers of a series (for services: thumbnails, exports)."""
        with self.index() as index:
            return index.series_headers(series_id)

    def headers_loader(self, series_id: int) -> Callable[[], Sequence[InstanceHeader]]:
        """A loader of a series' headers, called later (on an export's thread)."""
        return lambda: self.series_headers(series_id)

    # --- notes ----------------------------------------------------------------------------
    def notes(self, study_id: int) -> list[NoteRow]:
        """A study's clinical notes."""
        with self.index() as index:
            return index.notes(study_id)

    def save_notes(self, study_id: int, edits: Sequence[NoteEdit]) -> list[NoteRow | None]:
        """Write edited notes in one connection; per edit the stored row (None: an empty new note, not stored).

        Raises ``sqlite3.Error``/``OSError`` when the index cannot be written.
        """
        saved: list[NoteRow | None] = []
        with self.index() as index:
            for edit in edits:
                if edit.note_id is None:
                    if not edit.text.strip():
                        saved.append(None)  # an empty new note is not stored
                        continue
                    note_id = index.add_typed_note(study_id, edit.text)
                else:
                    note_id = edit.note_id
                    index.update_note(note_id, edit.text)
                saved.append(index.note(note_id))
        return saved

    # --- imports ----------------------------------------------------------------------------
    def import_paths(self, paths: Sequence[Path] | None) -> ImportResult:
        """Import files, folders or zips (headers only, in place); ``None``: the demo study (made if needed)."""
        from workstation.index.importer import import_paths

        workers = self.settings.import_workers if self.settings is not None else 0
        with self.index() as index:
            if paths is None:
                from workstation.services.studies import demo_study

                if self.settings is None:
                    raise ValueError("the demo study needs the application settings")
                return demo_study(self.settings, index)[1]
            return import_paths(list(paths), index, workers=workers)
