"""Report drafting and the grounding check (no torch or transformers at import).

- ``ReportInputs``: de-identified notes, technique facts, measured findings, comparison.
- ``TemplateDrafter`` (deterministic) and ``TransformersDrafter`` (a local causal LM,
  offline, streamed, cancellable), both returning a ``ReportDraft``; ``make_drafter``
  picks one.
- ``check_draft``: every number, side, structure, zone and image reference of a draft
  against the findings and notes, sentence by sentence, with links to the findings for
  navigation.
- ``targets_of``: what the notes' request asks (``Target``), answered first in the impression.
"""

from inference.drafting.draft import SECTIONS, ReportDraft
from inference.drafting.drafter import Drafter, make_drafter
from inference.drafting.facts import FindingLink
from inference.drafting.grounding import GroundingReport, SentenceCheck, check_draft, check_sentence
from inference.drafting.indication import Target, parse_indication, targets_of
from inference.drafting.inputs import ClinicalNote, ReportInputs, TechniqueFacts, scrub_identifiers
from inference.drafting.llm import Generation, TransformersDrafter, check_model_folder
from inference.drafting.prompt import SYSTEM_PROMPT, build_messages
from inference.drafting.sentences import split_sentences
from inference.drafting.template import TemplateDrafter

__all__ = [
    "SECTIONS",
    "SYSTEM_PROMPT",
    "ClinicalNote",
    "Drafter",
    "FindingLink",
    "Generation",
    "GroundingReport",
    "ReportDraft",
    "ReportInputs",
    "SentenceCheck",
    "Target",
    "TechniqueFacts",
    "TemplateDrafter",
    "TransformersDrafter",
    "build_messages",
    "check_draft",
    "check_model_folder",
    "check_sentence",
    "make_drafter",
    "parse_indication",
    "scrub_identifiers",
    "split_sentences",
    "targets_of",
]
