"""The window's PACS priors without Qt: look-up and retrieve as jobs on a runner of their own.

``PacsPriorService.look_up`` asks the configured nodes for the open series'
priors that the index lacks (``workstation.services.pacs_priors``);
``retrieve`` brings the chosen one into the index, with progress and cancel,
and answers the ``PriorCandidate`` the comparison takes. Both run on the
service's own runner (network I/O that may wait for a node's timeout must
not hold up the session's series loads, and never runs on the GUI thread);
answers are posted to the owner's thread and dropped once superseded. Without
configured nodes nothing runs and no thread is started.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from workstation.services.dispatch import Post
from workstation.services.runner import JobContext, JobDone, JobRunner, Ticket

if TYPE_CHECKING:
    from workstation.services.catalog import Catalog
    from workstation.services.followup import PriorCandidate
    from workstation.services.pacs_priors import RemotePrior, RemotePriorSearch
    from workstation.settings import Settings

logger = logging.getLogger(__name__)

QUERY, RETRIEVE = "pacs-priors", "pacs-prior-retrieve"


@dataclass(frozen=True)
class PriorRetrieved:
    """The remote prior is in the index: compare with ``candidate``."""

    prior: RemotePrior
    candidate: PriorCandidate


@dataclass(frozen=True)
class PriorNotRetrieved:
    """The retrieve failed or was cancelled (``cancelled``); ``message`` is the reader's sentence."""

    prior: RemotePrior
    message: str
    cancelled: bool = False


RetrieveOutcome = PriorRetrieved | PriorNotRetrieved


class PacsPriorService:
    """PACS look-up and retrieve of priors for the window; callbacks reach the owner through ``post``."""

    def __init__(self, post: Post, settings: Settings, catalog: Catalog) -> None:
        self._post = post
        self.settings = settings
        self.catalog = catalog
        self._runner: JobRunner | None = None  # made on first use: no nodes, no thread
        self._retrieve: Ticket | None = None
        self._closed = False

    def configured(self) -> bool:
        """True when settings name at least one PACS node (invalid PACS settings count as none)."""
        from inference.errors import WorkstationError
        from workstation.pacs.nodes import PacsConfig

        try:
            return bool(PacsConfig.from_settings(self.settings).nodes)
        except WorkstationError as exc:
            logger.warning("PACS priors off: %s", exc)
            return False

    def _runner_now(self) -> JobRunner:
        if self._runner is None:
            self._runner = JobRunner("pacs-priors-runner")
        return self._runner

    def look_up(self, series_id: int, answer: Callable[[int, RemotePriorSearch], None]) -> bool:
        """Ask the nodes for ``series_id``'s priors; ``answer(series_id, search)`` is posted back.

        False (and nothing runs) when no node is configured. A node that does not answer is in
        ``search.failures``; an unexpected failure is logged and answered as a failure too.
        """
        if self._closed or not self.configured():
            return False
        from workstation.services.pacs_priors import RemotePriorSearch, remote_priors_of_series

        settings, db_path = self.settings, self.catalog.db_path

        def work(ctx: JobContext) -> RemotePriorSearch:
            return remote_priors_of_series(settings, db_path, series_id, cancel=ctx.token)

        def done(d: JobDone[RemotePriorSearch]) -> None:
            if d.status == "cancelled":
                return
            if d.status == "failed" or d.value is None:
                logger.warning("series %d: PACS priors not looked up", series_id, exc_info=d.error)
                found = RemotePriorSearch(failures=(f"PACS priors not looked up: {d.error}",))
            else:
                found = d.value
            self._post(lambda: None if self._closed else answer(series_id, found))

        self._runner_now().submit(QUERY, work, on_done=done)
        return True

    def retrieve(self, series_id: int, prior: RemotePrior, *, progress: Callable[[int, int], None],
                 done: Callable[[RetrieveOutcome], None]) -> None:
        """Retrieve ``prior`` for comparison with ``series_id``; ``progress(n, total)`` and ``done`` are posted."""
        if self._closed:
            return
        from workstation.services.pacs_priors import retrieve_remote_prior
        from workstation.services.studies import SeriesSource

        settings, catalog = self.settings, self.catalog

        def work(ctx: JobContext) -> PriorCandidate:
            current = SeriesSource(f"series {series_id}", catalog.series_headers(series_id))
            return retrieve_remote_prior(
                settings, catalog.db_path, current, prior, cancel=ctx.token,
                progress=lambda n, total: self._post(lambda: None if self._closed else progress(n, total)))

        def finished(d: JobDone[PriorCandidate]) -> None:
            outcome: RetrieveOutcome
            if d.status == "finished" and d.value is not None:
                outcome = PriorRetrieved(prior, d.value)
            elif d.status == "cancelled":
                outcome = PriorNotRetrieved(prior, "Retrieve of the prior cancelled; what arrived is kept", True)
            else:
                outcome = PriorNotRetrieved(prior, _failure_text(prior, d.error))
            self._post(lambda: None if self._closed or self._retrieve is None or
                       self._retrieve.generation != d.generation else self._finish(outcome, done))

        self._retrieve = self._runner_now().submit(RETRIEVE, work, on_done=finished)

    def _finish(self, outcome: RetrieveOutcome, done: Callable[[RetrieveOutcome], None]) -> None:
        self._retrieve = None
        done(outcome)

    def is_busy(self) -> bool:
        """True while a retrieve is unanswered."""
        return self._retrieve is not None

    def cancel(self) -> None:
        """Ask the running retrieve to stop (what arrived stays in the index)."""
        if self._retrieve is not None:
            self._retrieve.cancel()

    def shutdown(self) -> None:
        """Cancel what runs and stop the runner's thread (the window is closing)."""
        self._closed = True
        if self._runner is not None:
            self._runner.shutdown(15.0)


def _failure_text(prior: RemotePrior, error: BaseException | None) -> str:
    """The reader's sentence for a retrieve that failed (a bug is logged with its traceback)."""
    from workstation.services.failures import is_expected, user_message

    exc = error or RuntimeError("unknown error")
    if not is_expected(exc):
        logger.error("retrieve of a prior failed", exc_info=exc)
    return user_message(exc, f"retrieving the prior of {prior.study_date or 'unknown date'} from PACS {prior.node}")
