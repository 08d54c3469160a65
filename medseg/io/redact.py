"""Keeping the patient's identity out of logs, summaries and output names.

medseg's own outputs are named by UIDs and cleaned series descriptions, but two things carry a
patient's identity into text a batch writes: a series description an operator typed a name into,
and the paths of input files, since study folders are often named after the patient
(``/data/DOE^JOHN_12345/IM_0002``). The words to hide come from the DICOM headers medseg read:
PatientName, PatientID and PatientBirthDate (:func:`identity_words`), with the spellings a folder
name gives them: parts run together (``DoeJohn``), accents dropped (``Garcia``), punctuation
dropped (``OBrien``), name and ID together (``Doe12345``), the birth date as ``1970-01-01``.

A word is hidden only where it stands as a whole token (between characters that are not letters
or digits; underscore separates, as in file names), never inside a longer word: a patient named
``LI^AN`` must not turn "anat" into "at". Paths keep their shape with ``*`` for each hidden word
(``/data/*^*_*/IM_0002``), so a user can still find the file with a glob. Name prefixes and
suffixes (``Mr``, ``Dr``, ``Jr``) identify no one and are not hidden. Text is compared in
Unicode NFC (macOS and SMB shares give decomposed file names). NIfTI and MGZ files carry no
patient identity, so nothing is known to hide in their names or paths.

Written here rather than taken from a de-identification library (deid, pydicom's anonymisation
examples): those clean DICOM datasets; this cleans free text that merely quotes their values.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import MutableSequence
from functools import lru_cache
from typing import Iterable, Mapping

# the attributes the words come from (dicom_headers keeps them on a damaged file's error too)
PATIENT_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate")
_PARTS = re.compile(r"[\s\-'\u2019.,]+")  # within a PN component: spaces, hyphens, apostrophes
_ALNUM_RUNS = re.compile(r"[^\W_]+")
_SEPARATORS = r"[ _\-^.,;:]"
_REMOVED = re.compile(rf"({_SEPARATORS}*)\0(?:{_SEPARATORS}*\0)*({_SEPARATORS}*)")
_IDENTIFYING_COMPONENTS = 3  # PN: family ^ given ^ middle ^ prefix ^ suffix
_MIN_NAME = 2
_MIN_ID = 3
_MIN_ID_RUN = 6  # a shorter run of an ID ("1000" of "PT-1000") is too often a number of its own


def _texts(value: object) -> list[str]:
    """The text values of a header attribute (a PersonName, a string, bytes, a MultiValue)."""
    if value is None:
        return []
    if isinstance(value, bytes):
        try:
            return [value.decode("utf-8")]
        except UnicodeDecodeError:
            return [value.decode("latin-1")]
    if isinstance(value, (list, tuple, MutableSequence)):  # a MultiValue; a PersonName is one text
        return [t for item in value for t in _texts(item)]
    return [str(value)]


def _spellings(word: str) -> set[str]:
    """``word`` as NFC, without accents, case-folded (``ß`` -> ``ss``), and repaired where a
    UTF-8 name was decoded as Latin-1 (``MÃ¼ller`` -> ``Müller``)."""
    nfc = unicodedata.normalize("NFC", word)
    out = {nfc, nfc.casefold(),
           "".join(c for c in unicodedata.normalize("NFKD", nfc) if not unicodedata.combining(c))}
    try:
        out.add(nfc.encode("latin-1").decode("utf-8"))
    except UnicodeError:
        pass
    return {w for w in out if w}


def _name_words(name: str) -> set[str]:
    """The words of one PersonName value: its components, their parts, and the parts run
    together."""
    words: set[str] = set()
    for group in name.split("="):  # alphabetic, ideographic and phonetic groups
        parts = []
        for component in group.split("^")[:_IDENTIFYING_COMPONENTS]:
            component = component.strip()
            pieces = [p for p in _PARTS.split(component) if p]
            if len(component) >= _MIN_NAME:
                words.add(component)
            if len(pieces) > 1:
                words.add("".join(pieces))  # O'Brien -> OBrien, Müller-Lüdenscheidt joined
            parts += [p for p in pieces if len(p) >= _MIN_NAME]
        words.update(parts)
        for i, a in enumerate(parts):  # any two parts run together: DoeJohn, JohnDoe
            for j, b in enumerate(parts):
                if i != j:
                    words.add(a + b)
        if len(parts) > 2:
            words.update(("".join(parts), "".join(reversed(parts))))
    return words


def identity_words(attributes: Mapping[str, object]) -> frozenset[str]:
    """The words that identify the patient of a header's attributes (see the module's text)."""
    names: set[str] = set()
    for name in _texts(attributes.get("PatientName")):
        names |= _name_words(name)
    ids: set[str] = set()
    for value in _texts(attributes.get("PatientID")):
        text = value.strip()
        if len(text) >= _MIN_ID:
            runs = _ALNUM_RUNS.findall(text)
            ids.update((text, "".join(runs)))
            ids.update(run for run in runs if len(run) >= _MIN_ID_RUN)
    words = names | ids
    for name in names:  # name and ID written together: Doe12345, 12345Doe, SmithAnna77777
        for patient_id in ids:
            words.update((name + patient_id, patient_id + name))
    for value in _texts(attributes.get("PatientBirthDate")):
        date = value.strip()
        if re.fullmatch(r"\d{8}", date):
            y, m, d = date[:4], date[4:6], date[6:]
            words.update((date, f"{y}-{m}-{d}", f"{y}_{m}_{d}", f"{y}.{m}.{d}", f"{d}.{m}.{y}",
                          f"{d}-{m}-{y}", f"{d}{m}{y}"))
    return frozenset(s for w in words if len(w) >= _MIN_NAME for s in _spellings(w))


def study_words(attribute_sets: Iterable[Mapping[str, object]]) -> frozenset[str]:
    """The union of :func:`identity_words` over several headers' attributes."""
    words: set[str] = set()
    for attributes in attribute_sets:
        words |= identity_words(attributes)
    return frozenset(words)


@lru_cache(maxsize=1024)
def _pattern(words: frozenset[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![^\W_])(?:{alternatives})(?![^\W_])", re.IGNORECASE)


class _Redactor:
    """The words indexed by their first letter-or-digit run, so that a text is matched against
    the few words whose runs it holds: a run over thousands of studies has tens of thousands of
    words, and one pattern of all of them costs milliseconds per message."""

    def __init__(self, words: frozenset[str]):
        self.index: dict[str, list[str]] = defaultdict(list)
        for word in words:
            runs = _ALNUM_RUNS.findall(word.casefold())
            if runs:
                self.index[runs[0]].append(word)

    def __call__(self, text: str, replacement: str) -> str:
        tokens = set(_ALNUM_RUNS.findall(text.casefold()))
        candidates = frozenset(w for t in tokens for w in self.index.get(t, ()))
        return _pattern(candidates).sub(replacement, text) if candidates else text


@lru_cache(maxsize=64)
def _redactor(words: frozenset[str]) -> _Redactor:
    return _Redactor(words)


def printable(text: str) -> str:
    """``text`` with control characters made spaces: a line break in a tag value would forge a
    log line."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def redact(text: str, words: frozenset[str], replacement: str = "*") -> str:
    """``text`` (a message, a path) in NFC with each identity word that stands as a whole token
    replaced by ``replacement``, and control characters made spaces."""
    text = unicodedata.normalize("NFC", printable(str(text)))
    return _redactor(words)(text, replacement) if words else text


def _join(match: re.Match[str]) -> str:
    if match.start() == 0 or match.end() == len(match.string):
        return ""
    return (match.group(1) or match.group(2))[:1]


def redact_description(text: str, words: frozenset[str]) -> str:
    """A series description with the identity words removed, each with the separators around it
    but one (``"JOHN-DOE t1"`` -> ``"t1"``, ``"t1_vibe_DOE_opp"`` -> ``"t1_vibe_opp"``); a
    description without them is left as it is."""
    text = redact(text, words, "\0")
    return _REMOVED.sub(_join, text).strip() if "\0" in text else text
