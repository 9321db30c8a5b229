"""What the report panel needs to know about the study it reports on, and where a finding link points.

``ReportContext`` bundles the analysis result, the drafter's inputs and the
study key (which names the autosave file). ``context_for_series`` builds one
from the study index the way the reading session sees a series.
``link_target`` turns a grounding ``FindingLink`` into the ``FindingTarget``
the viewer navigates to. Nothing here imports torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from inference.contract import AnalysisResult
from inference.drafting import SECTIONS, FindingLink, ReportInputs
from inference.drafting.facts import GroundingFacts, collect_facts
from workstation.dicomio.headers import InstanceHeader
from workstation.qt.panels.targets import FindingTarget, lesion_target, structure_target
from workstation.services.drafting import DraftSubject

logger = logging.getLogger(__name__)

HeadersLoader = Callable[[], Sequence[InstanceHeader]]
_KIND_ORDER = {"lesion": 0, "structure": 1, "measurement": 2}


@dataclass(frozen=True)
class ReportContext:
    """The study a report is written for: its key, the analysis, the drafter's inputs.

    ``headers`` loads the analysed series' DICOM headers (run on the export
    thread: exports reference the source images); without it the panel
    cannot export. ``series_id`` is the index's id of the analysed series.
    """

    study_key: str
    result: AnalysisResult
    inputs: ReportInputs
    study_description: str = ""
    series_uid: str = ""
    series_id: int | None = None
    headers: HeadersLoader | None = None

    @cached_property
    def subject(self) -> DraftSubject:
        """What the drafting pipeline drafts for: the inputs, and the study and analysis of the document."""
        return DraftSubject.of(self.study_key, self.inputs, self.result, study_description=self.study_description,
                               series_uid=self.series_uid)

    @cached_property
    def facts(self) -> GroundingFacts:
        """The measured facts and source texts a sentence is checked against (computed once per context)."""
        return collect_facts(self.inputs)

    @cached_property
    def links(self) -> dict[str, FindingLink]:
        """Every finding link of the analysis by key (sentences store only the keys)."""
        facts = self.facts
        out = {f.link.key: f.link for f in facts.facts}
        for src in facts.texts:
            out.setdefault(src.link.key, src.link)
        return out


def check_section(title: str) -> str:
    """The section name the grounding check uses for a document section titled ``title``."""
    low = title.strip().lower()
    return next((s for s in SECTIONS if s.lower() == low), "Findings")


def preferred_link(links: Sequence[FindingLink]) -> FindingLink | None:
    """The link a click navigates to: the first lesion, else structure, else measurement with a position."""
    placed = [ln for ln in links if ln.centroid_lps is not None]
    if not placed:
        return None
    return min(placed, key=lambda ln: _KIND_ORDER.get(ln.kind, 3))


def link_target(link: FindingLink, result: AnalysisResult | None) -> FindingTarget | None:
    """The viewer target of a link: the finding's own box when the result has it, else a point at its centroid."""
    if link.centroid_lps is None:
        return None
    if result is not None:
        parts = link.key.split(":")
        found = result.findings
        if parts[0] == "lesion" and len(parts) == 3:
            for les in found.lesions:
                if les.name == parts[1] and str(les.number) == parts[2]:
                    return lesion_target(les, result.labelmap, result.request.volume.spacing)
        name = parts[1] if parts[0] == "structure" and len(parts) == 2 else (
            parts[2] if parts[0] == "measurement" and len(parts) == 3 else "")
        for st in found.structures:
            if name and st.name == name:
                return structure_target(st, result.labelmap.shape)
    index = link.centroid_index or (0.0, 0.0, 0.0)
    voxel = (round(index[0]), round(index[1]), round(index[2]))
    kind: Literal["structure", "lesion"] = "lesion" if link.kind == "lesion" else "structure"
    return FindingTarget(kind, link.name, link.label or 0, voxel, index, link.centroid_lps, voxel, voxel)


def index_headers(db_path: Path, series_id: int) -> HeadersLoader:
    """A loader of a series' stored headers from the study index (opens its own connection when called)."""
    def load() -> list[InstanceHeader]:
        from workstation.index import StudyIndex

        with StudyIndex(db_path) as index:
            return index.series_headers(series_id)
    return load


def study_key_of_series(db_path: Path, series_id: int) -> str | None:
    """The study key (StudyInstanceUID or the index's substitute) of an indexed series; None if unknown."""
    from workstation.index import StudyIndex

    with StudyIndex(db_path) as index:
        row = index.find_series(str(series_id))
        study = index.study(row.study_id) if row is not None else None
    return study.study_key if study is not None else None


def study_id_of_key(db_path: Path, study_key: str) -> int | None:
    """The index's id of the study with this key (to reopen a recovered report's study); None if not indexed."""
    from workstation.index import StudyIndex

    with StudyIndex(db_path) as index:
        study = index.study_by_key(study_key)
    return study.id if study is not None else None


def study_title_of_key(db_path: Path, study_key: str) -> str:
    """How a reader knows a study: "DOE, Jane – CT CHEST – 2024-03-01" ('' when it is not indexed).

    For the reader's eyes only (the recovery offer); never logged.
    """
    from workstation.dicomio.display import dicom_date, person_name
    from workstation.index import StudyIndex

    with StudyIndex(db_path) as index:
        study = index.study_by_key(study_key)
    if study is None:
        return ""
    parts = (person_name(study.patient.name), study.description, dicom_date(study.date))
    return " – ".join(p for p in parts if p)


def context_for_series(db_path: Path, series_id: int, result: AnalysisResult, volume: Any) -> ReportContext:
    """The context of an analysed series of the index: study key, de-identified notes, technique, findings."""
    from workstation.index import StudyIndex
    from workstation.services.reporting import report_inputs

    with StudyIndex(db_path) as index:
        row = index.find_series(str(series_id))
        study_id = row.study_id if row is not None else None
        study = index.study(study_id) if study_id is not None else None
        inputs = report_inputs(index, study_id, result, volume)
    key = study.study_key if study is not None else f"series-{series_id}"
    return ReportContext(study_key=key, result=result, inputs=inputs,
                         study_description=inputs.technique.study_description,
                         series_uid=row.series_uid if row is not None else "", series_id=series_id,
                         headers=index_headers(db_path, series_id))
