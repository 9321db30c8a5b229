"""A small anatomy lexicon: the words a chest/abdomen report uses for structures, mapped to concepts.

The grounding check needs to know which words in a sentence name a structure
and whether that structure was measured or mentioned in the notes. Words map
to *concepts* ("trachea" -> airway, "vertebral body" -> bone, "hepatic" ->
liver); label names of any model map to concepts through the same lexicon
("lung_right" -> lung, "liver" -> liver), so a MONAI bundle that segments the
liver makes "liver" a known structure without code changes. Words that are not
in the lexicon are not judged: the lexicon lists what a report may name
wrongly, it does not claim to know all anatomy.

Lobes are their own concepts (upper, middle, lower lobe, lingula): naming one
("right upper lobe") needs a lobe model's labels or the notes. Zones (upper,
middle, lower zone: thirds of a segmented lung, ``inference.findings.zones``) are
parts of the lung; which lesion lies in which zone or lobe is checked by
``inference.drafting.grounding_places``.

Header values become words here too (``dicom_text``, ``body_part_words``):
"PARTIALBODY" is "partial body" and a multi-valued "Br38f\\3" is "Br38f".
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# concept -> surface forms (lower case; plural forms listed where irregular)
_TERMS: dict[str, tuple[str, ...]] = {
    "lung": ("lung", "lungs", "pulmonary", "lung parenchyma", "parenchyma", "lung base", "lung bases",
             "lung apex", "lung apices"),
    "lobe": ("lobe", "lobes", "lobar"),
    "upper lobe": ("upper lobe", "upper lobes"),
    "middle lobe": ("middle lobe",),
    "lower lobe": ("lower lobe", "lower lobes"),
    "lingula": ("lingula", "lingular"),
    "upper zone": ("upper zone", "upper zones"),
    "middle zone": ("middle zone", "middle zones"),
    "lower zone": ("lower zone", "lower zones"),
    "airway": ("airway", "airways", "trachea", "tracheal", "bronchus", "bronchi", "bronchial", "main bronchus",
               "carina"),
    "bone": ("bone", "bones", "osseous", "skeleton", "skeletal", "vertebra", "vertebrae", "vertebral",
             "vertebral body", "vertebral bodies", "spine", "thoracic spine", "lumbar spine", "cervical spine",
             "rib", "ribs",
             "sternum", "sternal", "clavicle", "clavicles", "scapula", "scapulae", "bone marrow", "marrow",
             "trabecular bone", "cortical bone", "cortex", "bone cortex", "vertebral levels", "vertebral level"),
    "muscle": ("muscle", "muscles", "skeletal muscle", "musculature", "paraspinal muscles", "pectoral muscles",
               "pectoralis"),
    "fat": ("fat", "adipose", "adipose tissue"),
    "subcutaneous fat": ("subcutaneous fat", "subcutaneous", "subcutaneous adipose tissue"),
    "visceral fat": ("visceral fat", "visceral adipose tissue", "intra-abdominal fat"),
    "lesion": ("nodule", "nodules", "mass", "masses", "lesion", "lesions", "tumour", "tumor", "tumours",
               "tumors", "metastasis", "metastases", "nodule candidate", "nodule candidates"),
    "chest": ("chest", "thorax", "thoracic"),
    "abdomen": ("abdomen", "abdominal"),
    "pelvis": ("pelvis", "pelvic"),
    "head": ("head", "brain", "cerebral", "skull"),
    "neck": ("neck", "cervical"),
    "liver": ("liver", "hepatic"),
    "spleen": ("spleen", "splenic"),
    "kidney": ("kidney", "kidneys", "renal"),
    "adrenal": ("adrenal", "adrenals", "adrenal gland", "adrenal glands"),
    "pancreas": ("pancreas", "pancreatic"),
    "gallbladder": ("gallbladder", "gall bladder", "biliary"),
    "stomach": ("stomach", "gastric"),
    "bowel": ("bowel", "colon", "colonic", "small bowel", "intestine", "intestines", "duodenum"),
    "oesophagus": ("oesophagus", "esophagus", "oesophageal", "esophageal"),
    "heart": ("heart", "cardiac", "pericardium", "pericardial", "myocardium", "coronary", "coronary arteries",
              "cardiomegaly"),
    "aorta": ("aorta", "aortic"),
    "pulmonary artery": ("pulmonary artery", "pulmonary arteries", "pulmonary trunk", "pulmonary embolism",
                         "pulmonary emboli"),
    "mediastinum": ("mediastinum", "mediastinal"),
    "hilum": ("hilum", "hila", "hilar"),
    "lymph node": ("lymph node", "lymph nodes", "lymphadenopathy", "nodal"),
    "thyroid": ("thyroid",),
    "thymus": ("thymus",),
    "pleura": ("pleura", "pleural", "pleural effusion", "pleural effusions", "effusion", "effusions",
               "pneumothorax"),
    "peritoneum": ("peritoneum", "peritoneal", "ascites"),
    "diaphragm": ("diaphragm", "hemidiaphragm", "diaphragmatic"),
    "breast": ("breast", "breasts"),
    "bladder": ("urinary bladder", "bladder"),
    "prostate": ("prostate",),
    "uterus": ("uterus", "uterine"),
    "ovary": ("ovary", "ovaries", "ovarian"),
    "spinal cord": ("spinal cord", "spinal canal"),
    "axilla": ("axilla", "axillae", "axillary"),
    "body": ("body", "trunk"),
}
# longest form first, so "vertebral body" is bone (not the body label) and "pulmonary artery" is not lung
_FORMS: dict[str, str] = {form: concept for concept, forms in _TERMS.items() for form in forms}
_FORM_RE = re.compile(r"\b(" + "|".join(re.escape(f).replace(r"\ ", r"\s+") for f in
                                         sorted(_FORMS, key=len, reverse=True)) + r")\b", re.IGNORECASE)

# a named part implies its whole: a measured "subcutaneous fat" makes "fat" a measured structure too
PARENTS: dict[str, str] = {"subcutaneous fat": "fat", "visceral fat": "fat", "upper lobe": "lobe",
                           "middle lobe": "lobe", "lower lobe": "lobe", "lingula": "lobe", "upper zone": "lung",
                           "middle zone": "lung", "lower zone": "lung"}
ZONE_CONCEPTS = frozenset({"upper zone", "middle zone", "lower zone"})
_SIDE_RE = re.compile(r"\b(right|left|bilateral|bilaterally|both)\b", re.IGNORECASE)
_NEGATION_RE = re.compile(r"\b(no|not|without|absent|none|neither|nor|negative\s+for|free\s+of)\b", re.IGNORECASE)
_CLAUSE_RE = re.compile(r"[;,:()]|\.\s|\s(?:and|but|while|whereas|with)\s", re.IGNORECASE)


@dataclass(frozen=True)
class Mention:
    """A lexicon term in a text: where, what was written, and its concept."""

    start: int
    end: int
    text: str
    concept: str


def find_terms(text: str) -> list[Mention]:
    """Structure terms in ``text`` (longest form wins), in order."""
    return [Mention(m.start(), m.end(), m.group(0), _FORMS[" ".join(m.group(0).lower().split())])
            for m in _FORM_RE.finditer(text)]


def concepts_in(texts: Iterable[str]) -> set[str]:
    """The concepts any of ``texts`` names (with their wholes)."""
    return with_parents(mention.concept for t in texts for mention in find_terms(t))


def label_concepts(name: str) -> set[str]:
    """Concepts a label name stands for: "lung_right" -> {lung}, "bone_marrow" -> {bone}, "lung_nodule" -> {lesion}.

    A label whose name holds no lexicon term stands for itself (its readable name).
    """
    readable = " ".join(re.split(r"[_\s]+", name.strip().lower()))
    found = {m.concept for m in find_terms(readable)}
    if "lesion" in found:  # "lung_nodule" is a lesion *in* the lung: it does not make every lung word a nodule
        return {"lesion"}
    return with_parents(found or {readable})


def with_parents(concepts: Iterable[str]) -> set[str]:
    """``concepts`` and the wholes they are part of (see ``PARENTS``)."""
    out = set(concepts)
    out |= {PARENTS[c] for c in out if c in PARENTS}
    return out


def sides_in(text: str) -> list[tuple[int, str]]:
    """(position, side) of every laterality word: side is "right", "left" or "both"."""
    out = []
    for m in _SIDE_RE.finditer(text):
        word = m.group(1).lower()
        out.append((m.start(), word if word in ("right", "left") else "both"))
    return out


def clauses(text: str) -> list[tuple[int, int]]:
    """(start, end) of the clauses of a sentence: split at , ; : ( ) and at and/but/while/whereas/with."""
    bounds = [0]
    bounds += [m.start() for m in _CLAUSE_RE.finditer(text)]
    bounds.append(len(text))
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def clause_of(spans: list[tuple[int, int]], position: int) -> tuple[int, int]:
    """The clause that holds ``position``."""
    for a, b in spans:
        if a <= position < b:
            return a, b
    return spans[-1] if spans else (0, 0)


def is_negated(text: str) -> bool:
    """Whether a clause is negated ("no nodule", "without", "absent")."""
    return _NEGATION_RE.search(text) is not None


# BodyPartExamined words (DICOM PS3.16 Annex L defined terms and common vendor codes), longest first when split
_REGIONS = ("head", "neck", "chest", "abdomen", "pelvis")
_BODY_WORDS = ("headneck", "thorax", "chest", "abdomen", "pelvis", "head", "neck", "whole", "partial", "body",
               "upper", "lower", "extremity", "extremities", "cspine", "tspine", "lspine", "spine", "breast", "heart",
               "liver", "kidney", "brain", "skull", "knee", "hip", "shoulder", "ankle", "wrist", "hand", "foot",
               "arm", "leg", "lung", "lungs", "cardiac", "coronary", "sinus", "sinuses")
_BODY_ALIASES = {"thorax": "chest", "cspine": "cervical spine", "tspine": "thoracic spine",
                 "lspine": "lumbar spine", "headneck": "head neck", "abd": "abdomen", "lungs": "lung"}


def dicom_text(value: object) -> str:
    """The first meaningful value of a (possibly multi-valued) DICOM string: "Br38f\\3" -> "Br38f".

    Values are split at backslashes (the DICOM value separator) or, for a list, taken in order; the
    first one holding a letter wins (Siemens' "\\3" is a sharpness index, not a kernel name), else the first
    non-empty one.
    """
    if isinstance(value, (list, tuple)):
        parts = [str(v).strip() for v in value]
    else:
        parts = [p.strip() for p in str(value).split("\\")]
    parts = [p for p in parts if p]
    return next((p for p in parts if re.search(r"[A-Za-z]", p)), parts[0] if parts else "")


def body_part_words(code: str) -> str:
    """A BodyPartExamined value in words: "PARTIALBODY" -> "partial body", "HEADNECK" -> "head and neck".

    Codes written together are split into known words (longest first); regions are joined with "and"
    ("CHESTABDOMENPELVIS" -> "chest, abdomen and pelvis"); anything unknown keeps its own spelling, in lower
    case, with underscores as spaces.
    """
    text = dicom_text(code).lower().replace("_", " ").replace("-", " ")
    words: list[str] = []
    for token in text.split():
        split = _split_body_word(token)
        words += split if split else [token]
    words = " ".join(_BODY_ALIASES.get(w, w) for w in words).split()
    regions = [w for w in words if w in _REGIONS]
    if len(regions) >= 2 and len(regions) == len(words):
        return ", ".join(regions[:-1]) + f" and {regions[-1]}"
    return " ".join(words)


def _split_body_word(token: str) -> list[str]:
    """``token`` as a sequence of known body-part words, or [] when it is not one (greedy, longest first)."""
    if not token:
        return []
    for word in sorted(_BODY_WORDS, key=len, reverse=True):
        if token.startswith(word):
            rest = _split_body_word(token[len(word):]) if len(token) > len(word) else []
            if len(token) == len(word) or rest:
                return [word, *rest]
    return []
