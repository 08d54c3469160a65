"""The patient's identity is kept out of the text a batch writes (medseg.io.redact): whole
words only, so that other words stay intact, and paths keep their shape."""

from __future__ import annotations

from medseg.io.redact import identity_words, redact, redact_description
from medseg.io.scan import redact_patient


def test_identity_words_are_name_parts_run_together_id_and_birth_date():
    words = identity_words({"PatientName": "Doe^John^^Dr", "PatientID": "AB-12345", "PatientBirthDate": "19700101"})
    assert {"Doe", "John", "Dr", "DoeJohnDr", "DrJohnDoe", "AB-12345", "12345", "19700101"} <= words
    assert "AB" not in words  # an ID's short runs are not words of their own
    assert identity_words({"PatientName": "", "PatientID": "7"}) == frozenset()
    # ideographic and phonetic groups are names too
    assert {"山田", "太郎", "Yamada"} <= identity_words({"PatientName": "Yamada^Tarou=山田^太郎"})


def test_a_short_name_never_garbles_other_words():
    words = identity_words({"PatientName": "LI^AN", "PatientID": "100"})
    assert redact_description("anat-T1w_acq-tfl", words) == "anat-T1w_acq-tfl"
    assert redact_description("3-Plane Localizer", words) == "3-Plane Localizer"
    assert redact_description("DWI 12345 b1000", words) == "DWI 12345 b1000"
    assert redact_description("t1 Li An", words) == "t1"


def test_names_in_a_description_are_removed_with_the_separators_they_leave():
    attributes = {"PatientName": "DOE^JOHN", "PatientID": "12345"}
    assert redact_patient("JOHN-DOE t1", attributes) == "t1"
    assert redact_patient("t1 sag doe", attributes) == "t1 sag"
    assert redact_patient("JohnDoe_12345 loc", attributes) == "loc"
    assert redact_patient("loc\nWARNING forged", attributes) == "loc WARNING forged"


def test_a_path_keeps_its_shape_with_each_hidden_word_a_star():
    words = identity_words({"PatientName": "DOE^JOHN", "PatientID": "12345"})
    message = "/data/DOE^JOHN_12345/IM_0002.dcm: truncated DICOM file; see /data/doejohn/x and /data/12345b"
    assert redact(message, words) == "/data/*^*_*/IM_0002.dcm: truncated DICOM file; see /data/*/x and /data/12345b"
    assert redact("nothing to hide", frozenset()) == "nothing to hide"
