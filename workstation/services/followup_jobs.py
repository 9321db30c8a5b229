"""Follow-up reading in the window, without Qt: the open study's priors, and the comparison as a device job.

``priors_of_series`` lists the same patient's earlier studies (their most
comparable series chosen by ``workstation.services.followup.find_priors``);
``FollowupService.look_up_priors`` does it on an I/O runner for the window.
``FollowupService.submit`` runs the comparison on the device runner (the one
owner of the GPU, where analyses and drafts run too; kind ``"followup"``):

1. the prior series is loaded and handed back at once (``PriorLoaded``), so
   the prior viewer fills while the rest runs;
2. with an analysis of the current series: ``compare_with_prior``
   (registration, the prior's analysis by the same model and version, lesion
   matching, guideline); without one: the registration alone, so the two
   studies can still be read side by side, linked. The prior's analysis is
   handed back as soon as it is there (``PriorAnalysed``: its label map, for
   the prior viewer's overlay; the comparison record keeps only findings).

Events (``PriorLoaded``, ``PriorAnalysed``, ``FollowupProgress``, ``FollowupFinished``, ``FollowupFailed``,
``FollowupCancelled``) are posted to the owner's thread and only for the newest
generation. ``FollowupFinished.registration`` is always there; its ``passed``
says whether it may link the views (a failed check is shown, never used).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workstation.listeners import Listeners
from workstation.services.dispatch import Post
from workstation.services.runner import PRIORITY_READER, CurrentJob, JobContext, JobDone, JobProgress, JobRunner

if TYPE_CHECKING:
    from inference.contract import AnalysisResult
    from inference.engine import Engine
    from inference.followup.model import Comparison, RegistrationResult
    from inference.volume import Volume
    from workstation.services.catalog import Catalog
    from workstation.services.followup import PriorCandidate
    from workstation.settings import Settings

logger = logging.getLogger(__name__)

KIND = "followup"


def priors_of_series(catalog: Catalog, series_id: int) -> list[PriorCandidate]:
    """The same patient's earlier studies with a series comparable to ``series_id``, newest first."""
    from workstation.services.followup import find_priors
    from workstation.services.studies import SeriesSource

    with catalog.index() as index:
        headers = index.series_headers(series_id)
        if not headers:
            return []
        return find_priors(index, SeriesSource(f"series {series_id}", headers))


def prior_text(candidate: PriorCandidate) -> str:
    """How the window names a prior: "2023-03-15 · CT CHEST · series 2 (2.5 mm)"."""
    when = candidate.study_date
    series = candidate.series
    thickness = f" ({candidate.slice_thickness_mm:g} mm)" if candidate.slice_thickness_mm else ""
    number = f"series {series.number}" if series.number is not None else "series"
    parts = (when.isoformat() if when else "date unknown", candidate.study.description or series.description,
             f"{number}{thickness}")
    return " · ".join(p for p in parts if p)


@dataclass(frozen=True)
class PriorLoaded:
    """The prior series is loaded (the registration still runs): show it."""

    generation: int
    candidate: PriorCandidate
    volume: Volume


@dataclass(frozen=True)
class PriorAnalysed:
    """The prior's analysis by the current's model (kept or made now): its label map lies on the prior's grid."""

    generation: int
    candidate: PriorCandidate
    result: AnalysisResult


@dataclass(frozen=True)
class FollowupProgress:
    """The newest (coalesced) progress of the comparison."""

    generation: int
    fraction: float
    stage: str


@dataclass(frozen=True)
class FollowupFinished:
    """Done: the alignment, and the lesion comparison when the current series had an analysis."""

    generation: int
    candidate: PriorCandidate
    registration: RegistrationResult
    comparison: Comparison | None


@dataclass(frozen=True)
class FollowupFailed:
    """The comparison could not be made; ``message`` is the user's sentence."""

    generation: int
    message: str


@dataclass(frozen=True)
class FollowupCancelled:
    """The comparison was cancelled (by the reader, or superseded)."""

    generation: int


FollowupEvent = PriorLoaded | PriorAnalysed | FollowupProgress | FollowupFinished | FollowupFailed | FollowupCancelled
Listener = Callable[[FollowupEvent], None]


@dataclass
class _Job:
    generation: int
    series_id: int
    volume: Volume
    result: AnalysisResult | None
    candidate: PriorCandidate
    token: Any = None


class FollowupService(CurrentJob):
    """Runs comparisons with a prior on the device runner; events reach listeners through ``post``."""

    def __init__(self, post: Post, settings: Settings, catalog: Catalog, runner: JobRunner, *,
                 io_runner: JobRunner | None = None, engine_factory: Callable[[], Engine] | None = None) -> None:
        self._post = post
        self.settings = settings
        self.catalog = catalog
        self.runner = runner
        self.io_runner = io_runner or runner  # where priors are looked up (index reads)
        self._engine_factory = engine_factory
        self._engine: Engine | None = None  # made and used on the runner's thread only
        self._lock = threading.Lock()
        self._listeners: Listeners[FollowupEvent] = Listeners("follow-up")
        self._active: _Job | None = None
        self._closed = False

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` on the owner's thread; returns the unsubscribe function."""
        return self._listeners.subscribe(listener)

    def submit(self, series_id: int, volume: Volume, result: AnalysisResult | None,
               candidate: PriorCandidate) -> int:
        """Compare the open series (its loaded ``volume`` and AI ``result``, if any) with ``candidate``."""
        if self._closed:
            raise RuntimeError("the follow-up service was shut down")
        generation = self.runner.generation(KIND) + 1
        job = _Job(generation, series_id, volume, result, candidate)
        self.cancel()
        self._active = job
        ticket = self.runner.submit(KIND, lambda ctx: self._run(job, ctx), priority=PRIORITY_READER,
                                    on_progress=lambda r: self._post(lambda: self._on_progress(r)),
                                    on_done=lambda d: self._post(lambda: self._on_done(job, d)))
        job.token = ticket.token
        logger.info("follow-up %d: series %d against prior series %d", generation, series_id,
                    candidate.series.id)
        return generation

    def look_up_priors(self, series_id: int, answer: Callable[[int, list[PriorCandidate]], None]) -> None:
        """Find the priors of ``series_id`` on the I/O runner (the index is read there, never on the owner's
        thread); ``answer(series_id, priors)`` is posted back (an empty list when the index cannot be read)."""
        catalog = self.catalog

        def work(_ctx: JobContext) -> list[PriorCandidate]:
            try:
                return priors_of_series(catalog, series_id)
            except Exception:  # an unreadable index must not break reading the series
                logger.warning("series %d: priors could not be looked up", series_id, exc_info=True)
                return []

        def done(d: JobDone[list[PriorCandidate]]) -> None:
            found = d.value if d.status == "finished" and d.value is not None else []
            self._post(lambda: None if self._closed else answer(series_id, found))

        self.io_runner.submit("priors", work, on_done=done)

    def shutdown(self) -> None:
        """Cancel and stop reporting (the runner belongs to the window)."""
        self._closed = True
        self._drop_active()

    # --- on the runner's thread ----------------------------------------------------------------
    def _engine_now(self) -> Engine:
        with self._lock:
            if self._engine is None:
                if self._engine_factory is not None:
                    self._engine = self._engine_factory()
                else:
                    from inference.engine import Engine
                    from workstation.services.remote_models import remote_models

                    self._engine = Engine(self.settings.models_path, remote=remote_models(self.settings))
            return self._engine

    def _run(self, job: _Job, ctx: JobContext) -> tuple[RegistrationResult, Comparison | None]:
        from inference.followup.registration import register
        from workstation.services.analysis_store import AnalysisStore
        from workstation.services.followup import compare_with_prior, is_screening
        from workstation.services.studies import SeriesSource, load_series_volumes

        with self.catalog.index() as index:
            current = SeriesSource(f"series {job.series_id}", index.series_headers(job.series_id))
            prior_id = job.candidate.series.id
            prior = SeriesSource(f"series {prior_id} ({job.candidate.series.description})",
                                 index.series_headers(prior_id))
            study = index.find_series(str(job.series_id))
            texts = [n.text for n in index.notes(study.study_id)] if study is not None else []
        texts.append(current.headers[0].study_description if current.headers else "")
        ctx.progress(0.0, "loading the prior series")
        prior_volume = load_series_volumes(prior).volumes[0]
        ctx.token.raise_if_cancelled()
        self._post(lambda: self._on_prior(job, prior_volume))
        if job.result is None:
            reg = register(job.volume, prior_volume, progress=ctx.progress, cancel=ctx.token)
            return reg, None
        comparison = compare_with_prior(
            current, job.volume, job.result, prior, engine=self._engine_now(),
            store=AnalysisStore.for_settings(self.settings), model_id=job.result.provenance.model_id,
            device=self.settings.device, screening=is_screening(texts), progress=ctx.progress, cancel=ctx.token,
            prior_volume=prior_volume, prior_analysed=lambda r: self._post(lambda: self._on_prior_analysed(job, r)))
        return comparison.registration, comparison

    # --- on the owner's thread -------------------------------------------------------------------
    def _current(self, job: _Job) -> bool:
        return not self._closed and self._active is job

    def _emit(self, event: FollowupEvent) -> None:
        self._listeners.emit(event)

    def _on_prior(self, job: _Job, volume: Volume) -> None:
        if self._current(job):
            self._emit(PriorLoaded(job.generation, job.candidate, volume))

    def _on_prior_analysed(self, job: _Job, result: AnalysisResult) -> None:
        if self._current(job):
            self._emit(PriorAnalysed(job.generation, job.candidate, result))

    def _on_progress(self, report: JobProgress) -> None:
        if not self._closed and self._active is not None and report.generation == self._active.generation:
            self._emit(FollowupProgress(report.generation, report.fraction, report.stage))

    def _on_done(self, job: _Job, done: JobDone[tuple[RegistrationResult, Comparison | None]]) -> None:
        if not self._current(job):
            logger.debug("dropped outcome of superseded follow-up %d", job.generation)
            return
        self._active = None
        if done.status == "finished" and done.value is not None:
            registration, comparison = done.value
            self._emit(FollowupFinished(job.generation, job.candidate, registration, comparison))
        elif done.status == "failed":
            self._emit(FollowupFailed(job.generation, _failure_text(job.candidate, done.error)))
        else:
            self._emit(FollowupCancelled(job.generation))


def _failure_text(candidate: PriorCandidate, error: BaseException | None) -> str:
    """The reader's sentence for a comparison that failed (a bug is logged with its traceback)."""
    from workstation.services.failures import is_expected, user_message

    exc = error or RuntimeError("unknown error")
    if not is_expected(exc):
        logger.error("follow-up failed", exc_info=exc)
    return user_message(exc, f"comparing with the prior of {prior_text(candidate)}")
