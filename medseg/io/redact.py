"""Keeping the patient's identity out of logs, summaries and output names.

medseg's own outputs are named by UIDs and cleaned series descriptions, but two things carry a
patient's identity into text a batch writes: a series description an operator typed a name into,
and the paths of input files, since study folders are often named after the patient
(``/data/DOE^JOHN_12345/IM_0002``). The words to hide come from the DICOM headers medseg read:
the parts of PatientName, the PatientID and the birth date (:func:`identity_words`).

A word is hidden only where it stands as a whole token (between characters that are not letters
or digits), never inside a longer word: a patient named ``LI^AN`` must not turn "anat" into "at"
or "Localizer" into "Locazer". Names written run together (``DOEJOHN``, ``JohnDoe``) are words too.
Paths keep their shape with ``*`` for each hidden word (``/data/*^*_*/IM_0002``), so a user can
still find the file with a glob. NIfTI and MGZ files carry no patient identity, so nothing is
known to hide in their names or paths.

Written here rather than taken from a de-identification library (deid, pydicom's anonymisation
examples): those clean DICOM datasets; this cleans free text that merely quotes their values.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, Mapping

_NAME_PARTS = re.compile(r"[\^\s=,]+")  # PN components (^), groups (=), and spaces within a part
_ALNUM_RUNS = re.compile(r"[^\W_]+")
_SEPARATORS = " -_^.,;:/\\"


def identity_words(attributes: Mapping[str, object]) -> frozenset[str]:
    """The words that identify the patient of a header's study attributes: PatientName's parts
    of two or more characters and those parts run together (given+family and family+given), the
    PatientID (three or more characters) and its runs of four or more letters or digits, and the
    birth date."""
    words: set[str] = set()
    name = attributes.get("PatientName")
    if name is not None and str(name).strip():
        groups = [g for g in str(name).split("=") if g.strip()]
        for group in groups:
            parts = [p for p in _NAME_PARTS.split(group) if p]
            words.update(p for p in parts if len(p) >= 2)
            if len(parts) >= 2:
                words.update(("".join(parts), "".join(reversed(parts))))
    patient_id = attributes.get("PatientID")
    if patient_id is not None and len(str(patient_id).strip()) >= 3:
        text = str(patient_id).strip()
        words.add(text)
        words.update(run for run in _ALNUM_RUNS.findall(text) if len(run) >= 4)
    birth = attributes.get("PatientBirthDate")
    if birth is not None and len(str(birth).strip()) >= 6:
        words.add(str(birth).strip())
    return frozenset(words)


def study_words(attribute_sets: Iterable[Mapping[str, object]]) -> frozenset[str]:
    """The union of :func:`identity_words` over several headers' study attributes."""
    words: set[str] = set()
    for attributes in attribute_sets:
        words |= identity_words(attributes)
    return frozenset(words)


@lru_cache(maxsize=256)
def _pattern(words: frozenset[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    # a whole token: no letter or digit just before or after (underscore separates, as in file names)
    return re.compile(rf"(?<![^\W_])(?:{alternatives})(?![^\W_])", re.IGNORECASE)


def printable(text: str) -> str:
    """``text`` with control characters made spaces: a line break in a tag value would forge a
    log line."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def redact(text: str, words: frozenset[str], replacement: str = "*") -> str:
    """``text`` (a message, a path) with each identity word that stands as a whole token replaced
    by ``replacement``, and control characters made spaces."""
    text = printable(text)
    if not words:
        return text
    return _pattern(words).sub(replacement, text)


def redact_description(text: str, words: frozenset[str]) -> str:
    """A series description with the identity words removed and the separators they leave at the
    ends or doubled tidied away (``"JOHN-DOE t1"`` -> ``"t1"``)."""
    text = redact(text, words, "")
    if words:
        text = re.sub(r"\s{2,}", " ", text).strip(_SEPARATORS)
    return text.strip()
