"""The patient's identity is kept out of the text a batch writes (medseg.io.redact): whole
words only, so that other words stay intact; the spellings a folder name gives a name; paths
keep their shape."""

from __future__ import annotations

import unicodedata

from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from medseg.io.redact import identity_words, redact, redact_description, study_words
from medseg.io.scan import redact_patient


def test_identity_words_are_name_parts_run_together_id_and_birth_date():
    words = identity_words({"PatientName": "Doe^John^Quincy^Dr^Jr", "PatientID": "AB-123456",
                            "PatientBirthDate": "19700102"})
    assert {"Doe", "John", "Quincy", "DoeJohn", "JohnDoe", "DoeJohnQuincy", "AB-123456", "AB123456",
            "123456", "Doe123456", "19700102", "1970-01-02", "02.01.1970"} <= words
    assert not {"Dr", "Jr", "AB"} & words  # prefixes, suffixes and an ID's short runs are not words
    assert identity_words({"PatientName": "", "PatientID": "7"}) == frozenset()
    # ideographic groups, PersonName and MultiValue values, bytes
    assert {"山田", "太郎", "Yamada"} <= identity_words({"PatientName": PersonName("Yamada^Tarou=山田^太郎")})
    assert {"Doe", "Roe"} <= identity_words({"PatientName": MultiValue(str, ["Doe^Jane", "Roe^Jane"])})
    assert "Doe" in identity_words({"PatientName": b"Doe^Jane"})


def test_a_short_name_never_garbles_other_words():
    words = identity_words({"PatientName": "LI^AN", "PatientID": "PT-1000"})
    for text in ("anat-T1w_acq-tfl", "3-Plane Localizer", "Ax DWI b=1000", "SAG T1 C-", "IM_0001"):
        assert redact_description(text, words) == text
    assert redact_description("t1 Li An", words) == "t1"
    assert redact_description("MR BRAIN", identity_words({"PatientName": "Doe^John^^Mr"})) == "MR BRAIN"


def test_names_in_a_description_are_removed_with_the_separators_they_leave():
    attributes = {"PatientName": "DOE^JOHN", "PatientID": "12345"}
    assert redact_patient("JOHN-DOE t1", attributes) == "t1"
    assert redact_patient("t1 sag doe", attributes) == "t1 sag"
    assert redact_patient("t1_vibe_DOE_opp", attributes) == "t1_vibe_opp"
    assert redact_patient("JohnDoe_12345 loc", attributes) == "loc"
    assert redact_patient("loc\nWARNING forged", attributes) == "loc WARNING forged"


def test_a_path_keeps_its_shape_with_each_hidden_word_a_star():
    words = identity_words({"PatientName": "DOE^JOHN", "PatientID": "12345"})
    message = "/data/DOE^JOHN_12345/IM_0002.dcm: truncated DICOM file; see /data/doejohn/x and /data/12345b"
    assert redact(message, words) == "/data/*^*_*/IM_0002.dcm: truncated DICOM file; see /data/*/x and /data/12345b"
    assert redact("nothing to hide", frozenset()) == "nothing to hide"


def test_the_spellings_of_a_name_in_folder_names_are_hidden():
    words = identity_words({"PatientName": "Müller-Lüdenscheidt^Greta", "PatientID": "ID-0043"})
    assert redact("/in/Müller_Greta_ID-0043/x", words) == "/in/*_*_*/x"
    assert redact("/in/Mueller/Muller-Ludenscheidt/x", words) == "/in/Mueller/*/x"  # accents dropped
    nfd = unicodedata.normalize("NFD", "/in/Müller^Greta/x")  # a decomposed file name (macOS, SMB)
    assert redact(nfd, words) == "/in/*^*/x"
    assert redact("/in/OBrien_Sean/x", identity_words({"PatientName": "O'Brien^Sean"})) == "/in/*_*/x"
    assert redact("/in/SmithAnna77777/x", identity_words({"PatientName": "Smith^Anna", "PatientID": "77777"})) \
        == "/in/*/x"
    # a UTF-8 name decoded as Latin-1 (no SpecificCharacterSet) still hides the folder's spelling
    assert redact("/in/Müller/x", identity_words({"PatientName": "MÃ¼ller^Hans"})) == "/in/*/x"
    assert redact("/in/Roe_1983-01-01/x", identity_words({"PatientName": "Roe^Jane", "PatientBirthDate": "19830101"})) \
        == "/in/*_*/x"


def test_thousands_of_patients_match_a_message_against_its_own_few_words(monkeypatch):
    """A run over thousands of studies has tens of thousands of words; a message is matched
    against only those whose first letter-or-digit run it holds (one pattern of them all costs
    milliseconds per message)."""
    from medseg.io import redact as module

    words = study_words({"PatientName": f"Family{k}^Given{k}", "PatientID": f"ID{k:06d}"} for k in range(3000))
    assert len(words) > 30000
    sizes = []
    original = module._pattern.__wrapped__
    monkeypatch.setattr(module, "_pattern", lambda w: sizes.append(len(w)) or original(w))
    message = "/data/Family2999^Given2999_ID002999/IM_0002.dcm: truncated DICOM file (pixel data needs 3 bytes)"
    assert redact(message, words) == "/data/*^*_*/IM_0002.dcm: truncated DICOM file (pixel data needs 3 bytes)"
    assert sizes and max(sizes) < 100, sizes
