"""Review pages in headless Chromium (software WebGL): the NiiVue views draw the image with the CC
overlay where the mask is, the planned stack and the spine seams; the triage index sorts outliers
first and re-sorts and filters in the browser."""

from __future__ import annotations

import io
import json

import nibabel as nib
import numpy as np
import pytest

from medseg.batch.triage import triage_rows, write_index
from medseg.report.browser import find_chromium
from medseg.report.view import seam_positions, write_composite_view, write_niivue, write_position_view

pytest.importorskip("websocket", reason="websocket-client is not installed")
needs_chromium = pytest.mark.skipif(find_chromium() is None,
                                    reason="no chromium on PATH (Debian: apt-get install -y chromium)")
N = 40  # voxels per axis, 3 mm
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])  # RAS, axes i -> R, j -> A, k -> S
AFFINE[:3, 3] = -58.5


def _save(array, path):
    nib.save(nib.Nifti1Image(array, AFFINE), str(path))


def _series_folder(folder):
    """A positioned series' outputs: image, CC mask (a bar in the upper front of the head),
    brain mask and a result.json in the plan's own geometry (LPS)."""
    folder.mkdir(parents=True)
    i, j, k = np.indices((N, N, N))
    head = ((i - 19.5) / 14) ** 2 + ((j - 19.5) / 17) ** 2 + ((k - 19.5) / 16) ** 2 < 1
    _save(np.where(head, 600, 120).astype(np.int16), folder / "image.nii.gz")
    cc = (abs(i - 19.5) < 2) & (j >= 24) & (j <= 32) & (k >= 26) & (k <= 30)
    _save(cc.astype(np.uint8), folder / "cc_mask.nii.gz")
    _save((head & (k > 8)).astype(np.uint8), folder / "brain_mask.nii.gz")
    line = {"angle_deg": 8.0, "center_mm": [0.0, -25.0, 26.0]}
    result = {
        "input": {"series_number": 1, "description": "phantom"},
        "midsagittal": {"kind": "volume", "point_mm": [0.0, 0.0, 0.0], "normal": [1.0, 0.0, 0.0]},
        "angles": {"final": line, "box": {**line, "angle_deg": 7.5}, "line": {**line, "angle_deg": 8.5},
                   "box_line_difference_deg": 1.0, "consistent": True},
        "axial_plan": {"center_mm": [0.0, -25.0, 26.0], "row_direction": [1.0, 0.0, 0.0],
                       "column_direction": [0.0, np.cos(np.radians(8)), np.sin(np.radians(8))],
                       "normal": [0.0, -np.sin(np.radians(8)), np.cos(np.radians(8))],
                       "pitch_deg": 8.0, "roll_deg": 0.0, "yaw_deg": 0.0},
        "measurements": {"area_mm2": 405.0}, "segmentation": {"area_mm2": 405.0, "confidence": 0.93},
        "brain": {"volume_ml": 1200.0},
    }
    (folder / "result.json").write_text(json.dumps(result))
    return folder


def _composite_folder(folder):
    """A composite 30 x 30 x 120 (2 mm) with two seams from three stations' extents."""
    folder.mkdir(parents=True)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-30.0, -30.0, -120.0]  # z from -120 to +118 mm
    rng = np.random.default_rng(0)
    nib.save(nib.Nifti1Image((rng.random((30, 30, 120)) * 400 + 300).astype(np.float32), affine),
             str(folder / "composite.nii.gz"))
    stations = [{"index": n, "head_foot_extent_mm": extent, "correction_mm": [0.0, 0.0, shift],
                 "registration": "accepted"}
                for n, (extent, shift) in enumerate([([40.0, 118.0], 0.0), ([-50.0, 60.0], 2.0),
                                                     ([-120.0, -30.0], 0.0)])]
    stitch = {"stations": stations, "output": {"shape": [30, 30, 120], "spacing_mm": [2.0, 2.0, 2.0]},
              "overlaps": [{"stations": [0, 1], "ncc": 0.9}, {"stations": [1, 2], "ncc": 0.8}], "gaps": []}
    (folder / "stitch.json").write_text(json.dumps(stitch))
    return folder


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _canvas(browser, png: bytes) -> np.ndarray:
    rect = browser.evaluate("(() => { const r = document.getElementById('gl').getBoundingClientRect();"
                            " return [r.left, r.top, r.right, r.bottom].map(Math.round); })()")
    return _pixels(png)[rect[1]:rect[3], rect[0]:rect[2]]


def _tile(rgb: np.ndarray, share: float = 0.5) -> tuple[slice, slice]:
    """The drawn rows and columns: where more than ``share`` of the fullest row (column) is not
    black (so that crosshair lines across the black margin do not count); 0: any lit pixel."""
    lit = rgb.max(axis=2) > 10
    rows, cols = lit.sum(axis=1), lit.sum(axis=0)
    r, c = np.nonzero(rows > share * rows.max())[0], np.nonzero(cols > share * cols.max())[0]
    return slice(r.min(), r.max() + 1), slice(c.min(), c.max() + 1)


def _red(rgb):
    return (rgb[..., 0] > 150) & (rgb[..., 1] < 90) & (rgb[..., 2] < 110)


def _yellow(rgb):
    return (rgb[..., 0] > 120) & (rgb[..., 1] > 100) & (rgb[..., 2] < 0.6 * rgb[..., 1])


@pytest.fixture(scope="module")
def browser():
    if find_chromium() is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install -y chromium)")
    from medseg.report.browser import Browser

    with Browser(640, 560) as b:
        yield b


READY = "document.body.dataset.ready === '1'"


@needs_chromium
def test_position_view_shows_cc_where_the_mask_is(tmp_path, browser):
    folder = _series_folder(tmp_path / "study" / "0001_phantom")
    view = write_position_view(folder, write_niivue(tmp_path))
    assert "niivue.umd.js" in view.read_text() and "http" not in view.read_text().split("<script src=")[1][:20]
    browser.open(view.as_uri() + "?layout=sagittal&crosshair=0&hide=meshes", ready=READY)
    png = browser.screenshot()
    (tmp_path / "sagittal.png").write_bytes(png)
    shown = _canvas(browser, png)
    rows, cols = _tile(shown, share=0)  # the head (no crosshair, no meshes)
    tile = shown[rows, cols]
    assert tile.shape[0] > 150 and tile.std() > 10  # the image is drawn, not a blank canvas
    red = _red(tile)
    assert red.sum() > 100
    y, x = np.nonzero(red)
    # where the CC bar lies within the head in the drawn sagittal slice (superior up, anterior on
    # the right in NiiVue's sagittal view), from the arrays: voxel edges as fractions of the head
    head = nib.load(str(folder / "image.nii.gz")).get_fdata()[20] > 300  # (j, k)
    cc = nib.load(str(folder / "cc_mask.nii.gz")).get_fdata()[20] > 0
    (hj, hk), (cj, ck) = np.nonzero(head), np.nonzero(cc)
    height, width = hk.max() + 1 - hk.min(), hj.max() + 1 - hj.min()
    assert y.min() / tile.shape[0] == pytest.approx((hk.max() - ck.max()) / height, abs=0.03)
    assert (y.max() + 1) / tile.shape[0] == pytest.approx((hk.max() + 1 - ck.min()) / height, abs=0.03)
    assert x.min() / tile.shape[1] == pytest.approx((cj.min() - hj.min()) / width, abs=0.03)
    assert (x.max() + 1) / tile.shape[1] == pytest.approx((cj.max() + 1 - hj.min()) / width, abs=0.03)
    assert red.sum() / red.size == pytest.approx(cc.sum() / (height * width), rel=0.25)
    browser.open(view.as_uri() + "?layout=sagittal&crosshair=0&hide=meshes,cc", ready=READY)
    hidden = _canvas(browser, browser.screenshot())[rows, cols]
    assert _red(hidden).sum() < 0.02 * red.sum()  # the red came from the CC layer
    browser.open(view.as_uri() + "?layout=render", ready=READY)
    assert _yellow(_canvas(browser, browser.screenshot())).sum() > 200  # the planned stack (mesh)


@needs_chromium
def test_composite_view_marks_the_seams(tmp_path, browser):
    folder = _composite_folder(tmp_path / "study" / "spine_01")
    stitch = json.loads((folder / "stitch.json").read_text())
    assert seam_positions(stitch) == pytest.approx([(40 + 62) / 2, (-48 - 30) / 2])
    view = write_composite_view(folder, write_niivue(tmp_path))
    browser.open(view.as_uri(), ready=READY)
    shown = _canvas(browser, browser.screenshot())
    rows, cols = _tile(shown)
    tile = shown[rows, cols]
    yellow_rows = np.nonzero(_yellow(tile).sum(axis=1) > 0.5 * tile.shape[1])[0]
    assert len(yellow_rows)
    groups = np.split(yellow_rows, np.nonzero(np.diff(yellow_rows) > 2)[0] + 1)
    found = sorted(g.mean() / tile.shape[0] for g in groups)
    top = 118 + 1  # the grid's superior edge (voxel centres at -120..118 mm)
    expected = sorted((top - z) / 240 for z in seam_positions(stitch))
    assert found == pytest.approx(expected, abs=0.02)


def _studies():
    def ok(series, area, **extra):
        return {"series": series, "stage": "position", "status": "ok", "kind": "localizer",
                "final_angle_deg": 5.0, "box_angle_deg": 4.0, "line_angle_deg": 6.0, "consistent": True,
                "cc_area_mm2": area, "confidence": 0.9, "brain_volume_ml": 500.0, **extra}

    studies = [{"study_id": f"s{n:02d}", "status": "ok", "series": [ok("loc", 600.0 + 10 * (n % 5))]}
               for n in range(12)]
    studies.append({"study_id": "s-big", "status": "ok", "series": [ok("loc", 1900.0)]})  # |z| large
    studies.append({"study_id": "s-fail", "status": "failed", "series": [
        {"series": "loc", "stage": "position", "status": "failed", "error_type": "NoCorpusCallosumError",
         "message": "fragmented"}]})
    studies.append({"study_id": "s-steep", "status": "ok", "series": [ok("loc", 610.0, final_angle_deg=70.0)]})
    studies.append({"study_id": "s-disagree", "status": "ok", "series": [
        ok("loc", 620.0, consistent=False, box_angle_deg=-5.0, line_angle_deg=12.0)]})
    studies.append({"study_id": "s-skip", "status": "skipped", "series": [
        {"series": "ct", "stage": "route", "status": "skipped", "message": "not MR"}]})
    return studies


def test_triage_rows_flag_and_order_outliers_first():
    rows = triage_rows(_studies())
    order = [r["study_id"] for r in rows]
    assert order[0] == "s-fail"
    assert set(order[1:4]) == {"s-big", "s-steep", "s-disagree"} and order[-1] == "s-skip"
    by_id = {r["study_id"]: r for r in rows}
    # 1,900 mm2 is outside the adult range and far from the batch: both flags
    assert by_id["s-big"]["flags"] == ["implausible", "cc-area-outlier"] and by_id["s-big"]["cc_area_z"] > 2.5
    assert by_id["s-steep"]["flags"] == ["implausible"]
    assert by_id["s-disagree"]["flags"] == ["inconsistent"] and by_id["s-disagree"]["box_line_deg"] == 17.0
    assert all(not by_id[f"s{n:02d}"]["flags"] for n in range(12))


@needs_chromium
def test_triage_page_sorts_filters_and_pages(tmp_path, browser):
    index = write_index(_studies(), tmp_path)
    rows_js = "[...document.querySelectorAll('#rows tr')].map(r => r.dataset.study)"
    browser.open(index.as_uri(), ready=READY)
    shown = browser.evaluate(rows_js)
    assert shown[0] == "s-fail" and set(shown[1:4]) == {"s-big", "s-steep", "s-disagree"}
    assert len(shown) == 17
    browser.evaluate("document.querySelector('th[data-key=cc_area_mm2]').click()")  # numeric: descending
    areas = browser.evaluate("[...document.querySelectorAll('#rows tr')].map(r => r.children[8].textContent)")
    values = [float(a) for a in areas if a]
    assert values == sorted(values, reverse=True) and values[0] == 1900.0
    assert areas[-2:] == ["", ""]  # the failed and the skipped series have no area: last
    browser.evaluate("document.querySelector('th[data-key=cc_area_mm2]').click()")  # ascending
    values = [float(a) for a in browser.evaluate(
        "[...document.querySelectorAll('#rows tr')].map(r => r.children[8].textContent)") if a]
    assert values == sorted(values)
    browser.open(index.as_uri() + "?status=failed", ready=READY)
    assert browser.evaluate(rows_js) == ["s-fail"]
    browser.evaluate("document.getElementById('status').value = ''; document.getElementById('size').value = '50';"
                     "document.getElementById('flagged').checked = true;"
                     "document.getElementById('flagged').dispatchEvent(new Event('input'))")
    assert sorted(browser.evaluate(rows_js)) == ["s-big", "s-disagree", "s-fail", "s-steep"]


@needs_chromium
def test_triage_page_pages_a_long_run(tmp_path, browser):
    studies = _studies() + [{"study_id": f"t{n:03d}", "status": "ok", "series": [
        {"series": "loc", "stage": "position", "status": "ok", "cc_area_mm2": 600.0 + n % 7}]} for n in range(100)]
    index = write_index(studies, tmp_path)
    browser.open(index.as_uri(), ready=READY)
    rows_js = "[...document.querySelectorAll('#rows tr')].map(r => r.dataset.study)"
    browser.evaluate("const s = document.getElementById('size'); s.value = '50'; s.dispatchEvent(new Event('input'))")
    first = browser.evaluate(rows_js)
    assert len(first) == 50 and first[0] == "s-fail"
    assert browser.evaluate("document.getElementById('pageinfo').textContent") == "page 1 of 3 (117 rows)"
    browser.evaluate("document.getElementById('next').click(); document.getElementById('next').click()")
    last = browser.evaluate(rows_js)
    assert len(last) == 17 and last[-1] == "s-skip" and not set(first) & set(last)


def test_display_image_keeps_values_it_can_round():
    from medseg.positioning.pipeline import display_image
    from medseg.volume import Volume

    corrected = Volume(np.linspace(0, 1500.4, 1000, dtype=np.float32).reshape(10, 10, 10), np.eye(4))
    shown = display_image(corrected)
    assert shown.array.dtype == np.int16
    assert np.abs(shown.array - corrected.array).max() <= 0.5
    small = corrected.with_array(np.asarray(corrected.array) / 1500.0)  # a 0..1 image stays float
    assert display_image(small).array.dtype == np.float32
    assert np.array_equal(display_image(small).array, small.array)
