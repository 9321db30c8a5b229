"""The open study's priors on a PACS, without Qt: found by C-FIND/QIDO-RS, retrieved on request.

``find_priors`` (``workstation.services.followup``) lists the same patient's
earlier studies that are already in the index. When PACS nodes are configured
(settings ``pacs`` -> ``nodes``; only those nodes are ever contacted), the
patient's earlier studies of the same modality that the index does not hold
(matched by StudyInstanceUID) are asked for here:

* ``find_remote_priors`` queries every configured node (C-FIND when the node
  has a DIMSE address, else QIDO-RS) for the current PatientID, StudyDate
  before the current one and the current modality; per study it picks the
  most comparable series (same modality, same body part when both say, most
  images). A node that does not answer becomes a sentence in ``failures``,
  never an exception: the local priors still work.
* ``retrieve_remote_prior`` brings one of them into the index with the
  existing, resumable retrieve (``workstation.pacs.retrieve.retrieve_study``:
  C-GET, C-MOVE or WADO-RS as the node is configured) and returns it as the
  ``PriorCandidate`` the comparison takes.
* ``fetch_newest_pacs_prior`` is what ``workstation report`` does without
  ``--prior`` when ``pacs.query_priors`` is on: retrieve the newest prior on
  the PACS when it is newer than the newest one in the index.

Patient names and IDs never reach the log (counts and node names only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from inference.cancel import CancelledError, CancelToken
from inference.errors import WorkstationError
from workstation.index.db import StudyIndex
from workstation.pacs.errors import StudyNotFoundError
from workstation.pacs.nodes import PacsConfig, PacsNode
from workstation.pacs.query import SeriesResult, StudyQuery, StudyResult
from workstation.services.followup import PriorCandidate, find_priors, parse_da

if TYPE_CHECKING:
    from workstation.dicomio.headers import InstanceHeader
    from workstation.pacs.nodes import LocalAE
    from workstation.services.studies import SeriesSource
    from workstation.settings import Settings

logger = logging.getLogger(__name__)

MAX_STUDIES_PER_NODE = 20
"""The newest this many earlier studies per node are looked at (each costs a series query)."""

RetrieveProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class RemotePrior:
    """An earlier study of the patient that a PACS holds and the index does not, with its best series."""

    node: str
    study_uid: str
    study_date: date | None
    description: str
    modality: str
    series_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    instance_count: int | None = None

    @property
    def text(self) -> str:
        """How the window names it: "2023-03-15 · CT CHEST · series 2 · on PACS orthanc"."""
        when = self.study_date.isoformat() if self.study_date else "date unknown"
        series = f"series {self.series_number}" if self.series_number is not None else "series"
        images = f" ({self.instance_count} images)" if self.instance_count else ""
        parts = (when, self.description or self.series_description, f"{series}{images}", f"on PACS {self.node}")
        return " · ".join(p for p in parts if p)


@dataclass(frozen=True)
class RemotePriorSearch:
    """What the configured nodes answered: the remote priors (newest first) and one sentence per node that failed."""

    priors: tuple[RemotePrior, ...] = ()
    failures: tuple[str, ...] = ()
    nodes: int = 0


def prior_query(first: InstanceHeader) -> StudyQuery | None:
    """The study query for ``first``'s patient: same PatientID, earlier StudyDate, same modality.

    None when the current study has no PatientID or no valid date (a query
    without them could return another patient's studies or later ones).
    """
    when = parse_da(first.study_date)
    patient = first.patient_id.strip()
    if when is None or not patient:
        return None
    before = (when - timedelta(days=1)).strftime("%Y%m%d")
    return StudyQuery(patient_id=patient, date_to=before, modality=first.modality)


def _comparable(study: StudyResult, first: InstanceHeader, known: Container[str]) -> bool:
    """An answer that is this patient's, earlier, of the current modality, and not in the index."""
    when, then = parse_da(first.study_date), parse_da(study.date)
    if not study.study_uid or study.study_uid in known or study.study_uid == first.study_uid:
        return False
    if study.patient_id != first.patient_id.strip():  # wildcards in an ID must not widen the match
        return False
    if when is None or then is None or then >= when:
        return False
    return not study.modalities or first.modality.upper() in {m.upper() for m in study.modalities}


def best_series(series: list[SeriesResult], first: InstanceHeader) -> SeriesResult | None:
    """The most comparable series: same modality, same body part when both say, then most images."""
    fits = [s for s in series if s.modality.upper() == first.modality.upper()
            and not (first.body_part and s.body_part and s.body_part.upper() != first.body_part.upper())]
    return max(fits, key=lambda s: (s.instance_count or 0, -(s.number or 0)), default=None)


def _ask_node(node: PacsNode, local: LocalAE, query: StudyQuery, first: InstanceHeader, known: Container[str],
              cancel: CancelToken | None) -> list[RemotePrior]:
    """One node's remote priors (raises the node's ``PacsError`` when it does not answer)."""
    find_series: Callable[[str], list[SeriesResult]]
    if node.has_dimse:
        from workstation.pacs.dimse import DimseClient

        dimse = DimseClient(node, local)
        studies = dimse.find_studies(query, limit=200, cancel=cancel)

        def find_series(uid: str) -> list[SeriesResult]:
            return dimse.find_series(uid, cancel=cancel)
    else:
        from workstation.pacs.dicomweb import DicomWebClient

        web = DicomWebClient(node)
        studies = web.search_studies(query, limit=200)
        find_series = web.search_series
    wanted = sorted((s for s in studies if _comparable(s, first, known)), key=lambda s: s.date, reverse=True)
    found: list[RemotePrior] = []
    for study in wanted[:MAX_STUDIES_PER_NODE]:
        if cancel is not None:
            cancel.raise_if_cancelled()
        listed = find_series(study.study_uid)
        series = best_series(listed, first)
        if listed and series is None:
            continue  # the PACS listed the study's series and none is comparable
        found.append(RemotePrior(node.name, study.study_uid, parse_da(study.date), study.description,
                                 first.modality.upper(), series.series_uid if series else "",
                                 series.number if series else None, series.description if series else "",
                                 series.instance_count if series else None))
    return found


def find_remote_priors(config: PacsConfig, first: InstanceHeader, known_study_uids: Container[str], *,
                       cancel: CancelToken | None = None) -> RemotePriorSearch:
    """The patient's earlier studies on the configured nodes that the index does not hold, newest first.

    ``first``: a header of the open series; ``known_study_uids``: the StudyInstanceUIDs in the index
    (``InIndex``, or a set).
    A study on several nodes is offered once (from the first node listed, the default node first).
    """
    query = prior_query(first)
    nodes = sorted(config.nodes, key=lambda n: n.name != config.default_node)
    if query is None or not nodes:
        return RemotePriorSearch(nodes=len(nodes))
    found: dict[str, RemotePrior] = {}
    failures: list[str] = []
    for node in nodes:
        try:
            for prior in _ask_node(node, config.local, query, first, known_study_uids, cancel):
                found.setdefault(prior.study_uid, prior)
        except CancelledError:
            raise
        except WorkstationError as exc:
            logger.warning("priors not looked up on PACS %s: %s", node.name, exc)
            failures.append(f"PACS {node.name}: {exc}")
    priors = sorted(found.values(), key=lambda p: p.study_date or date.min, reverse=True)
    logger.info("prior look-up on %d PACS node(s): %d earlier stud%s not in the index", len(nodes), len(priors),
                "y" if len(priors) == 1 else "ies")
    return RemotePriorSearch(tuple(priors), tuple(failures), len(nodes))


class InIndex:
    """The index's StudyInstanceUIDs as a container, asked one answer at a time (an index may hold many studies)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path

    def __contains__(self, uid: object) -> bool:
        if not isinstance(uid, str) or not uid:
            return False
        with StudyIndex(self.db_path) as index:
            return index.study_by_uid(uid) is not None


def remote_priors_of_series(settings: Settings, db_path: Path, series_id: int, *,
                            cancel: CancelToken | None = None) -> RemotePriorSearch:
    """``find_remote_priors`` for a series of the index (its first header; the index's study UIDs known)."""
    config = PacsConfig.from_settings(settings)
    if not config.nodes:
        return RemotePriorSearch()
    with StudyIndex(db_path) as index:
        headers = index.series_headers(series_id)
    if not headers:
        return RemotePriorSearch(nodes=len(config.nodes))
    return find_remote_priors(config, headers[0], InIndex(db_path), cancel=cancel)


def retrieve_remote_prior(settings: Settings, db_path: Path, current: SeriesSource, prior: RemotePrior, *,
                          progress: RetrieveProgress | None = None,
                          cancel: CancelToken | None = None) -> PriorCandidate:
    """Retrieve ``prior`` (its chosen series, else the study) into the index; its ``PriorCandidate``.

    The retrieve is the PACS dialog's (resumable: a retry after a cancel asks only for what is missing).
    Raises ``PacsError`` subclasses or ``CancelledError``; ``StudyNotFoundError`` when what arrived holds no
    series comparable to ``current``.
    """
    from workstation.pacs.retrieve import retrieve_study

    config = PacsConfig.from_settings(settings)
    node = config.node(prior.node)
    result = retrieve_study(node, config.local, prior.study_uid, db_path=db_path,
                            storage_dir=config.storage_path(settings.data_dir),
                            series_uids=(prior.series_uid,) if prior.series_uid else (),
                            progress=progress, cancel=cancel)
    logger.info("prior from PACS %s: %d image(s) received, %d already here", node.name, result.received,
                result.already_present)
    with StudyIndex(db_path) as index:
        for candidate in find_priors(index, current):
            if candidate.study.study_uid == prior.study_uid:
                return candidate
    raise StudyNotFoundError(f"the prior of {prior.study_date or 'unknown date'} retrieved from PACS {node.name} "
                             "holds no series comparable with the open one")


def fetch_newest_pacs_prior(settings: Settings, current: SeriesSource, *,
                            progress: RetrieveProgress | None = None, cancel: CancelToken | None = None) -> str:
    """For ``workstation report`` without ``--prior``: when ``pacs.query_priors`` is on, retrieve the newest
    prior on the PACS if it is newer than the newest in the index (the automatic selection then finds it).

    Returns a note for the report ("" when nothing was worth saying); a PACS that fails is a note, never an error.
    """
    try:
        config = PacsConfig.from_settings(settings)
    except WorkstationError as exc:
        return f"priors not looked up on the PACS: {exc}"
    if not config.query_priors or not config.nodes or not current.headers:
        return ""
    with StudyIndex(settings.db_path) as index:
        local = find_priors(index, current)
    search = find_remote_priors(config, current.headers[0], InIndex(settings.db_path), cancel=cancel)
    notes = [f"priors not looked up on {f}" for f in search.failures]
    newest_local = local[0].study_date if local else None
    if search.priors and (newest_local is None or (search.priors[0].study_date or date.min) > newest_local):
        prior = search.priors[0]
        try:
            retrieve_remote_prior(settings, settings.db_path, current, prior, progress=progress, cancel=cancel)
        except CancelledError:
            raise
        except WorkstationError as exc:
            logger.warning("prior on PACS %s not retrieved: %s", prior.node, exc)
            notes.append(f"prior of {prior.study_date} on PACS {prior.node} not retrieved: {exc}")
    return "; ".join(notes)
