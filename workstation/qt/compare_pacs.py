"""The follow-up reading's priors on a PACS: offered in the prior chooser, retrieved when compared.

``PacsPriors`` is a part of ``CompareReading`` (``workstation.qt.compare``).
After the index's priors are in the chooser it asks the configured PACS nodes
for the patient's earlier studies the index lacks
(``workstation.services.pacs_prior_jobs.PacsPriorService``, on a runner of its
own, never the GUI thread) and appends them, marked "on PACS <node>". A node
that does not answer is a status-bar line; the local priors work regardless.
Compare on such an entry retrieves it into the index (progress in the
follow-up toolbar, Cancel stops it and keeps what arrived), then compares as
for a local prior.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from workstation.services.pacs_prior_jobs import PacsPriorService, PriorRetrieved, RetrieveOutcome

if TYPE_CHECKING:
    from workstation.qt.compare import CompareReading
    from workstation.services.catalog import Catalog
    from workstation.services.followup import PriorCandidate
    from workstation.services.pacs_priors import RemotePrior, RemotePriorSearch
    from workstation.settings import Settings

logger = logging.getLogger(__name__)


class PacsPriors(QObject):
    """The remote part of the prior chooser; see the module docstring."""

    found = Signal(int, int)  # series id, how many priors only a PACS holds (also after a failed look-up)
    retrieved = Signal(object)  # PriorCandidate: a prior from the PACS is now in the index

    def __init__(self, reading: CompareReading, settings: Settings, catalog: Catalog) -> None:
        super().__init__(reading)
        self.reading = reading
        self.service = PacsPriorService(reading._poster.post, settings, catalog)
        self.priors: list[RemotePrior] = []  # after the index's priors in the chooser, in this order
        self.failures: tuple[str, ...] = ()
        self._asked = 0
        self._arrived: dict[str, PriorCandidate] = {}  # study UID -> the candidate, once retrieved

    def look_up(self, series_id: int) -> None:
        """Ask the PACS nodes for ``series_id``'s priors (nothing happens when none is configured)."""
        self.priors, self.failures = [], ()
        self._asked += 1
        asked = self._asked
        self.service.look_up(series_id, lambda sid, search: self._found(asked, sid, search))

    def _found(self, asked: int, series_id: int, search: RemotePriorSearch) -> None:
        reading = self.reading
        if asked != self._asked or series_id != reading.series_id:
            return  # another series was opened, or the priors were looked up again, meanwhile
        self.priors, self.failures = list(search.priors), search.failures
        for prior in self.priors:
            reading.chooser.addItem(prior.text)
        reading.offer()
        if self.failures:
            reading.message.emit("Priors not looked up on the PACS (" + "; ".join(self.failures) + "); the priors "
                                 "in the index can still be compared")
        elif self.priors:
            n = len(self.priors)
            reading.message.emit(f"{n} earlier stud{'y' if n == 1 else 'ies'} of this patient on PACS, the latest "
                                 f"{self.priors[0].text}: choose it and Compare to retrieve it")
        self.found.emit(series_id, len(self.priors))

    def retrieve_then_compare(self, series_id: int, index: int) -> None:
        """Retrieve the ``index``-th remote prior into the index, then compare with it."""
        prior = self.priors[index]
        arrived = self._arrived.get(prior.study_uid)
        if arrived is not None:  # retrieved earlier in this session
            self.reading.compare_with(arrived)
            return
        self.reading._running(True)
        self.reading.progress.setFormat(f"%p% retrieving from PACS {prior.node}")
        self.reading.message.emit(f"Retrieving the prior {prior.text}…")
        self.service.retrieve(series_id, prior, progress=self._progress, done=self._done)

    def _progress(self, done: int, total: int) -> None:
        if self.service.is_busy():
            self.reading.progress.setValue(round(100 * min(done, total) / total) if total > 0 else 0)

    def _done(self, outcome: RetrieveOutcome) -> None:
        reading = self.reading
        reading._running(False)
        if not isinstance(outcome, PriorRetrieved):
            reading.message.emit(outcome.message)
            return
        self._arrived[outcome.prior.study_uid] = outcome.candidate
        reading.browser.refresh()  # the retrieved study joins the browser
        self.retrieved.emit(outcome.candidate)
        current = reading.session.current
        if current is not None and current.series_id == reading.series_id:
            reading.compare_with(outcome.candidate)

    def shutdown(self) -> None:
        """Cancel a running retrieve or look-up and stop the runner (the window is closing)."""
        self.service.shutdown()
