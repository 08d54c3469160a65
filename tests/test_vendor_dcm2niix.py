"""Vendor conventions checked against dcm2niix, the field's reference converter, on synthetic
pydicom files: Philips enhanced multi-frame scaling (MRScaleSlope inside each frame's private
(2005,140F) item) and GE epi_pepolar series that mix reverse and forward phase-encoding volumes.

dcm2niix's conventions (its Philips/README.md "Image scaling"; issues 363 and 532):
- Philips: by default (``-p y``) the "precise" floating-point value FP = DV / (RS * SS), with
  DV = SV * RS + RI the display value and SS = MRScaleSlope; ``-p n`` keeps DV. medseg returns FP
  by default (``scan(..., philips_precise=False)``: DV). A NIfTI holds one slope: when the
  scaling differs between frames, dcm2niix writes float32 display values, whereas medseg scales
  each frame to its own FP (when RS_f * SS_f is the same for all frames, as when frames are
  scaled to use the int16 range, the two differ by that one constant).
- GE epi_pepolar: user data 12 (0019,10B3) gives the scheme (0 forward, 1 reverse, 2 reverse
  then forward, 3 forward then reverse). Reverse volumes are stored with their rows in reverse
  order under the forward geometry; dcm2niix writes them to their own NIfTI (series number +
  1000) with the rows flipped back, medseg to their own stack (``pe_rev``) with the geometry
  corrected. Both place every voxel at the same world position.

Skipped when dcm2niix is not installed (``pip install dcm2niix``; in the dev extras).
"""

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.io import scan
from medseg.volume import LPS_TO_RAS
from tests.conftest import compare_dcm2niix_module
from tests.test_vendor_scaling import _ge_epi, philips_enhanced


def _dcm2niix() -> str:
    found = shutil.which("dcm2niix")
    if found:
        return found
    try:
        import dcm2niix
    except ImportError:
        pytest.skip("dcm2niix is not installed (pip install dcm2niix)")
    binary = Path(dcm2niix.__file__).parent / "dcm2niix"
    if not binary.exists():
        pytest.skip("the dcm2niix package has no binary")
    return str(binary)


def _compare_module():
    return compare_dcm2niix_module()


def _convert(folder: Path, out: Path, *options: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """dcm2niix's outputs as (file name, data, LPS affine)."""
    out.mkdir()
    subprocess.run([_dcm2niix(), "-z", "n", "-b", "n", "-f", "%s_%d", *options, "-o", str(out), str(folder)],
                   check=True, capture_output=True)
    result = []
    for path in sorted(out.glob("*.nii")):
        image = nib.load(path)
        result.append((path.name, np.asarray(image.get_fdata(dtype=np.float64)), LPS_TO_RAS @ image.affine))
    return result


def _on_their_grid(volume, data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, float]:
    """medseg's values at dcm2niix's voxels, and the largest world distance (mm) between the two
    voxel grids; fails unless the grids are one another's axis permutation/flip."""
    module = _compare_module()
    found = module.match(affine, data.shape, volume)
    assert found is not None, "dcm2niix's grid is not medseg's up to axis order and flips"
    ours = module.sample(np.asarray(volume.array, dtype=np.float64), data.shape,
                         found["permutation"], found["offset"])
    return ours.reshape(data.shape), found["world_error_mm"]


@pytest.mark.parametrize("slope, intercept, scale", [(1.08083, 0.0, 0.0190212), (1.53455, -3142.0, 651.74)])
def test_philips_precise_values_and_geometry_agree_with_dcm2niix(tmp_path, slope, intercept, scale):
    pixels = np.random.default_rng(2).integers(0, 4000, size=(4, 10, 12))
    (tmp_path / "in").mkdir()
    philips_enhanced(tmp_path / "in" / "IM1", pixels, slope=slope, intercept=intercept,
                     scale_slopes=[scale] * 4, top_level_scale=1.0)  # misleading top level
    ((_, data, affine),) = _convert(tmp_path / "in", tmp_path / "out")
    (ref,) = scan(tmp_path / "in").series
    ours, world_error = _on_their_grid(ref.load(), data, affine)
    assert world_error < 1e-3
    expected = (pixels * slope + intercept) / (slope * scale)  # FP, frame-major like pixels
    np.testing.assert_allclose(np.sort(ours.ravel()), np.sort(expected.ravel()), rtol=1e-5,
                               atol=1e-6 * np.abs(expected).max())
    # dcm2niix stores the NIfTI slope 1/SS rounded to 11 significant bits (1609 / 2**20 for
    # 1 / 651.74, 7e-5 relative): equal within that
    np.testing.assert_allclose(ours, data, rtol=2e-4, atol=2e-4 * np.abs(expected).max())


def test_philips_display_values_agree_with_dcm2niix_without_precise_scaling(tmp_path):
    pixels = np.random.default_rng(3).integers(0, 4000, size=(3, 8, 6))
    (tmp_path / "in").mkdir()
    philips_enhanced(tmp_path / "in" / "IM1", pixels, slope=1.53455, intercept=-3142.0,
                     scale_slopes=[651.74] * 3)
    ((_, data, affine),) = _convert(tmp_path / "in", tmp_path / "out", "-p", "n")
    (ref,) = scan(tmp_path / "in", philips_precise=False).series
    ours, world_error = _on_their_grid(ref.load(), data, affine)
    assert world_error < 1e-3
    np.testing.assert_allclose(ours, data, rtol=1e-5, atol=1e-3)
    assert ours.min() < -3000  # DV = SV * RS + RI: the intercept is kept


def test_philips_per_frame_scaling_precise_in_medseg_display_in_dcm2niix(tmp_path):
    """Frames stored with their own scaling (to use the int16 range: SV = FP * SS_f, with
    RS_f * SS_f the same for all frames, so that display values agree across frames too).
    medseg gives every frame its precise value FP; dcm2niix, whose NIfTI holds one slope, writes
    float32 display values DV = FP * RS * SS instead: the two differ by that one constant."""
    rng = np.random.default_rng(4)
    truth = rng.uniform(50, 400, size=(3, 8, 6))  # FP
    scales = np.array([10.0, 5.0, 20.0])  # SS_f
    product = 1.25  # RS_f * SS_f
    pixels = np.rint(truth * scales[:, None, None])
    (tmp_path / "in").mkdir()
    philips_enhanced(tmp_path / "in" / "IM1", pixels, slope=list(product / scales), intercept=0.0,
                     scale_slopes=list(scales))
    ((_, data, affine),) = _convert(tmp_path / "in", tmp_path / "out")
    volume = scan(tmp_path / "in").series[0].load()
    for f in range(3):  # medseg: each frame's own FP = SV / SS_f
        np.testing.assert_allclose(volume.array[:, :, f], pixels[f].T / scales[f], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(volume.array), np.transpose(truth, (2, 1, 0)), atol=0.1)
    ours, world_error = _on_their_grid(volume, data, affine)
    assert world_error < 1e-3
    np.testing.assert_allclose(data, ours * product, rtol=1e-5)  # dcm2niix: DV = FP * RS * SS


@pytest.mark.parametrize("scheme", [2, 3])
def test_ge_pepolar_split_and_geometry_agree_with_dcm2niix(tmp_path, scheme):
    _ge_epi(tmp_path / "in", sequence_name="epi_pepolar", user_data=scheme, ramp=True)
    theirs = _convert(tmp_path / "in", tmp_path / "out")
    assert len(theirs) == 2  # forward and reverse volumes in separate files
    stacks = {ref.label: ref.load() for ref in scan(tmp_path / "in").series}
    assert set(stacks) == {"pe_fwd", "pe_rev"}
    for name, data, affine in theirs:
        label = "pe_rev" if name.startswith("1003_") else "pe_fwd"  # reverse: series number + 1000
        ours, world_error = _on_their_grid(stacks[label], data, affine)
        assert world_error < 1e-3
        np.testing.assert_array_equal(ours, data)
    # the reverse stack covers the same voxel positions, its rows running the other way
    forward, reverse = stacks["pe_fwd"], stacks["pe_rev"]

    def positions(volume):
        return np.unique(np.round(volume.world_coordinates(
            np.indices(volume.spatial_shape).reshape(3, -1).T), 6), axis=0)

    np.testing.assert_allclose(positions(reverse), positions(forward), atol=1e-6)
    np.testing.assert_allclose(reverse.affine[:3, 1], -forward.affine[:3, 1], atol=1e-9)


def test_ge_pepolar_all_reverse_is_one_stack_with_flipped_rows_like_dcm2niix(tmp_path):
    _ge_epi(tmp_path / "in", sequence_name="epi_pepolar", user_data=1, ramp=True)
    ((_, data, affine),) = _convert(tmp_path / "in", tmp_path / "out")
    (ref,) = scan(tmp_path / "in").series
    ours, world_error = _on_their_grid(ref.load(), data, affine)
    assert world_error < 1e-3
    np.testing.assert_array_equal(ours, data)


def test_ge_pepolar_user_data_as_real_files_store_it_agrees_with_dcm2niix(tmp_path):
    """Real GE files write user data 12 as a decimal ("3.000000"); in an implicit-VR file it is
    read back as raw bytes. dcm2niix rounds it: the volumes are split and flipped all the same."""
    _ge_epi(tmp_path / "in", sequence_name="epi_pepolar", user_data="3.000000", ramp=True, implicit=True)
    theirs = _convert(tmp_path / "in", tmp_path / "out")
    stacks = {ref.label: ref.load() for ref in scan(tmp_path / "in").series}
    assert len(theirs) == 2 and set(stacks) == {"pe_fwd", "pe_rev"}
    for name, data, affine in theirs:
        ours, world_error = _on_their_grid(stacks["pe_rev" if name.startswith("1003_") else "pe_fwd"], data, affine)
        assert world_error < 1e-3
        np.testing.assert_array_equal(ours, data)


def test_ge_pepolar_alternating_without_volume_numbers_is_left_as_dcm2niix_leaves_it(tmp_path):
    """Alternating schemes need each image's volume (TemporalPositionIdentifier): without it
    dcm2niix flips nothing, and neither does medseg."""
    _ge_epi(tmp_path / "in", sequence_name="epi_pepolar", user_data=2, ramp=True, temporal_positions=False)
    theirs = _convert(tmp_path / "in", tmp_path / "out")
    refs = scan(tmp_path / "in").series
    assert len(refs) == 1 and not refs[0].label
    (volume,) = [ref.load() for ref in refs]
    for _, data, affine in theirs:
        _, world_error = _on_their_grid(volume, data, affine)
        assert world_error < 1e-3
    np.testing.assert_allclose(volume.affine[:3, 1], [0, 2.0, 0], atol=1e-9)  # rows as the header says


@pytest.mark.parametrize("case", ["private_rescale", "real_world_slope"])
def test_philips_rescale_sources_are_read_in_dcm2niix_order(tmp_path, case):
    """Which rescale a Philips frame uses where several are given, checked against dcm2niix's
    precise values: the private (2005,140F) item's RescaleSlope/Intercept over the public ones;
    the RealWorldValueMapping slope where the public slope is 1."""
    pixels = np.random.default_rng(5).integers(0, 4000, size=(3, 8, 6))
    (tmp_path / "in").mkdir()
    if case == "private_rescale":
        philips_enhanced(tmp_path / "in" / "IM1", pixels, slope=2.0, intercept=-100.0, scale_slopes=[4.0] * 3,
                         private_rescale=(3.0, -300.0))
        expected = (pixels * 3.0 - 300.0) / (3.0 * 4.0)
    else:
        philips_enhanced(tmp_path / "in" / "IM1", pixels, slope=1.0, intercept=0.0, scale_slopes=[4.0] * 3,
                         real_world=(2.5, 7.0))
        expected = (pixels * 2.5 + 7.0) / (2.5 * 4.0)
    ((_, data, affine),) = _convert(tmp_path / "in", tmp_path / "out")
    (ref,) = scan(tmp_path / "in").series
    ours, world_error = _on_their_grid(ref.load(), data, affine)
    assert world_error < 1e-3
    np.testing.assert_allclose(np.sort(ours.ravel()), np.sort(expected.ravel()), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ours, data, rtol=2e-4, atol=2e-4 * np.abs(expected).max())


def _move_private_block(dataset, group: int, old: int, new: int) -> None:
    """Move a private block (its creator and elements) from slot ``old`` to ``new``, as some
    anonymisers and PACS rewrite files; also inside per-frame items and their private items."""
    from pydicom.dataelem import DataElement

    datasets = []
    for item in [dataset, *(dataset.get("PerFrameFunctionalGroupsSequence") or [])]:
        datasets += [item, *(item[(0x2005, 0x140F)].value if (0x2005, 0x140F) in item else [])]
    for item in datasets:
        for tag in [t for t in item.keys() if t.group == group and (t.element == old or t.element >> 8 == old)]:
            element = item[tag]
            moved = (group, new) if tag.element == old else (group, new << 8 | (tag.element & 0xFF))
            del item[tag]
            item[moved] = DataElement(moved, element.VR, element.value)


@pytest.mark.parametrize("vendor", ["philips", "ge"])
def test_private_blocks_moved_to_another_slot_are_read_like_dcm2niix(tmp_path, vendor):
    """An anonymiser or PACS that moves a private creator to another slot moves its elements
    with it ((2005,0010) -> (2005,0011): MRScaleSlope at (2005,110E)); medseg finds them by their
    creator, as dcm2niix does, and gives the same values and split."""
    import pydicom

    (tmp_path / "made").mkdir()
    if vendor == "philips":
        pixels = np.random.default_rng(6).integers(0, 4000, size=(3, 8, 6))
        philips_enhanced(tmp_path / "made" / "IM1", pixels, slope=1.53455, intercept=-3142.0,
                         scale_slopes=[651.74] * 3, top_level_scale=1.0)
        moves = [(0x2005, 0x10, 0x11), (0x2005, 0x14, 0x15)]
    else:
        _ge_epi(tmp_path / "made" / "ge", sequence_name="epi_pepolar", user_data=3, ramp=True)
        moves = [(0x0019, 0x10, 0x11)]
    (tmp_path / "in").mkdir()
    for path in sorted(p for p in (tmp_path / "made").rglob("*") if p.is_file()):
        dataset = pydicom.dcmread(path)
        for group, old, new in moves:
            _move_private_block(dataset, group, old, new)
        dataset.save_as(tmp_path / "in" / path.name)
    theirs = _convert(tmp_path / "in", tmp_path / "out")
    refs = scan(tmp_path / "in").series
    if vendor == "philips":
        ((_, data, affine),) = theirs
        (ref,) = refs
        ours, world_error = _on_their_grid(ref.load(), data, affine)
        assert world_error < 1e-3
        expected = (pixels * 1.53455 - 3142.0) / (1.53455 * 651.74)  # precise: the frames' own SS
        np.testing.assert_allclose(np.sort(ours.ravel()), np.sort(expected.ravel()), rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(ours, data, rtol=2e-4, atol=2e-4 * np.abs(expected).max())
    else:
        stacks = {ref.label: ref.load() for ref in refs}
        assert len(theirs) == 2 and set(stacks) == {"pe_fwd", "pe_rev"}
        for name, data, affine in theirs:
            ours, world_error = _on_their_grid(stacks["pe_rev" if name.startswith("1003_") else "pe_fwd"], data,
                                               affine)
            assert world_error < 1e-3
            np.testing.assert_array_equal(ours, data)
