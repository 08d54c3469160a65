import json

import numpy as np

from medseg.cli import main
from tests.conftest import oblique_geometry, write_series


def test_info_json_lists_series_and_problems(oblique_series, capsys):
    folder, *_ = oblique_series
    (folder / "junk.txt").write_text("x")
    assert main(["info", str(folder), "--json", "-q"]) == 0
    info = json.loads(capsys.readouterr().out)
    (study,) = info["studies"]
    (series,) = study["series"]
    assert series["shape"] == [20, 24, 9] and series["n_files"] == 9
    assert series["spacing_mm"][2] == 2.5
    assert info["skipped"][0]["path"].endswith("junk.txt")
    assert "Secret" not in json.dumps(info)  # no patient names


def test_info_on_folder_without_images_fails_clearly(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("x")
    assert main(["info", str(tmp_path), "-q"]) == 2
    assert main(["info", str(tmp_path / "missing"), "-q"]) == 2


def test_convert_names_are_safe_and_input_untouched(tmp_path, capsys):
    iop, ipps, pixel = oblique_geometry(n=3)
    src = tmp_path / "in"
    write_series(src, [np.ones((24, 20), np.int16)] * 3, ipps, iop, pixel,
                 description="../../etc/passwd\x07 T1/mprage")
    before = sorted(p.name for p in src.rglob("*"))
    out = tmp_path / "out"
    assert main(["convert", str(src), "-o", str(out), "-q"]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == 1
    name = written[0]
    assert "/" not in name and "\x07" not in name and not name.startswith(".")
    assert name.endswith(".nii.gz") and "passwd" in name
    assert sorted(p.name for p in src.rglob("*")) == before


def test_convert_goes_on_after_a_bad_series(tmp_path, capsys):
    iop, ipps, pixel = oblique_geometry(n=4)
    write_series(tmp_path / "good", [np.ones((24, 20), np.int16)] * 4, ipps, iop, pixel,
                 description="good")
    bad_ipps = list(ipps)
    del bad_ipps[1]
    write_series(tmp_path / "bad", [np.ones((24, 20), np.int16)] * 3, bad_ipps, iop, pixel,
                 description="gappy")
    out = tmp_path / "out"
    assert main(["convert", str(tmp_path), "-o", str(out), "-q"]) == 1
    assert [p.name for p in out.iterdir()] == ["0003_good.nii.gz"]


def test_demo_runs_the_whole_job(tmp_path, capsys):
    import pytest

    from tests.conftest import REPO

    if not (REPO / "models" / "cc_attention_unet.json").exists():
        pytest.skip("no shipped CC model")
    pytest.importorskip("nilearn")
    status = main(["demo", "-o", str(tmp_path / "demo"), "-q"])
    output = capsys.readouterr().out
    assert status == 0, output
    assert (tmp_path / "demo" / "results" / "index.html").exists()
    assert "spine_01" in output
    changes = [float(line.split("measured pitch change ")[1].split(" deg")[0])
               for line in output.splitlines() if "measured pitch change" in line]
    assert len(changes) == 2  # localizer and 3D T1
    assert all(abs(change - 10.0) < 2.5 for change in changes), output
