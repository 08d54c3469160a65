"""N4 recovers a known bias field; bad inputs get clear errors."""

import numpy as np
import pytest

from medseg.errors import InputError
from medseg.preprocess import N4Options, correct_bias_field, foreground_mask, normalize_intensity
from medseg.synth.phantom import HeadPhantom, sagittal_affine
from medseg.volume import Volume


def known_log_field(shape, affine):
    points = np.indices(shape).reshape(3, -1).T @ affine[:3, :3].T + affine[:3, 3]
    x, y, z = (points / 90.0).T
    return (0.35 * x + 0.25 * z ** 2 - 0.2 * y + 0.1 * x * z).reshape(shape)


@pytest.mark.parametrize("options", [N4Options.fast(), N4Options(iterations=(30, 30, 30))])
def test_n4_recovers_a_known_field_in_3d(options):
    shape, affine = (96, 96, 80), sagittal_affine((96, 96, 80), (2.2, 2.2, 2.2))
    image, labels = HeadPhantom(pitch_deg=5, seed=2).sample(shape, affine, noise=0.01, bias=0.0)
    log_field = known_log_field(shape, affine)
    corrected, field = correct_bias_field(Volume(image * np.exp(log_field) * 1000, affine), options=options)
    brain = labels >= 4
    assert np.corrcoef(np.log(field.array[brain]), log_field[brain])[0, 1] >= 0.99
    # the corrected image is flatter inside white matter than the biased one
    wm = labels == 5
    biased = image * np.exp(log_field)
    assert np.std(corrected.array[wm]) / np.mean(corrected.array[wm]) < np.std(biased[wm]) / np.mean(biased[wm])


def test_n4_corrects_sparse_thick_slices_one_by_one():
    shape, affine = (200, 200, 5), sagittal_affine((200, 200, 5), (1.2, 1.2, 15.0))
    image, labels = HeadPhantom(seed=3).sample(shape, affine, noise=0.01, bias=0.0)
    log_field = known_log_field(shape, affine)
    _, field = correct_bias_field(Volume(image * np.exp(log_field) * 1000, affine), options=N4Options.fast())
    for k in range(shape[2]):
        brain = labels[:, :, k] >= 4
        if brain.sum() > 500:  # each slice's field is known up to its own scale
            assert np.corrcoef(np.log(field.array[:, :, k][brain]), log_field[:, :, k][brain])[0, 1] >= 0.97


def test_constant_image_has_no_foreground():
    with pytest.raises(InputError, match="no foreground"):
        foreground_mask(Volume(np.full((10, 10, 10), 7.0), np.eye(4)))
    with pytest.raises(InputError):
        correct_bias_field(Volume(np.zeros((10, 10, 10)), np.eye(4)))


def test_normalisation_uses_the_foreground_of_the_whole_series():
    rng = np.random.default_rng(0)
    array = rng.normal(0, 1, (40, 40, 6)).clip(0)  # noise everywhere
    array[10:30, 10:30, 2:4] += 100 + rng.normal(0, 5, (20, 20, 2))  # a "head" in two slices only
    out = normalize_intensity(Volume(array, np.eye(4)))
    # A noise-only slice stays far below the tissue range [0, 1]; normalising it on its own
    # percentiles would stretch it over [0, 1] and make it look like tissue.
    assert out.array[:, :, 0].max() < -1.0
    assert 0.3 < np.median(out.array[10:30, 10:30, 2]) < 0.7


def test_n4_on_a_slab_fits_those_slices_and_holds_the_field_beyond():
    from medseg.segment.infer import LR_SEARCH_MM, localizer_search_slab

    shape, affine = (128, 128, 35), sagittal_affine((128, 128, 35), (2.0, 2.0, 4.0))
    image, labels = HeadPhantom(seed=4).sample(shape, affine, noise=0.01, bias=0.0)
    log_field = known_log_field(shape, affine)
    volume = Volume(image * np.exp(log_field) * 1000, affine)
    head = foreground_mask(volume)
    first, stop = localizer_search_slab(volume, head)
    # the slices within the CC search's reach of the head's left-right centre, one more each side
    assert 0 < first and stop < shape[2] and (stop - first - 2) * 4.0 <= 2 * LR_SEARCH_MM + 4.0
    corrected, field = correct_bias_field(volume, head, N4Options.fast(), slices=(first, stop))
    sub = Volume(np.asarray(volume.array)[..., first:stop], affine @ _shift(first))
    _, alone = correct_bias_field(sub, head[..., first:stop], N4Options.fast())
    np.testing.assert_allclose(field.array[..., first:stop], alone.array, rtol=1e-5)
    np.testing.assert_array_equal(field.array[..., 0], field.array[..., first])
    np.testing.assert_array_equal(field.array[..., -1], field.array[..., stop - 1])
    brain = (labels >= 4)[..., first:stop]
    assert np.corrcoef(np.log(field.array[..., first:stop][brain]), log_field[..., first:stop][brain])[0, 1] >= 0.97
    np.testing.assert_allclose(corrected.array, np.asarray(volume.array) / field.array, rtol=1e-6)


def test_the_n4_slab_of_a_localizer_stored_left_right_first_is_the_same_slices():
    from medseg.segment.infer import localizer_search_slab

    shape, affine = (128, 128, 35), sagittal_affine((128, 128, 35), (2.0, 2.0, 4.0))
    image, _ = HeadPhantom(seed=4).sample(shape, affine, noise=0.01, bias=0.0)
    volume = Volume(image * 1000, affine)
    turned = volume.permute_axes((2, 0, 1))
    assert localizer_search_slab(turned, foreground_mask(turned)) == localizer_search_slab(
        volume, foreground_mask(volume))
    thin = Volume(np.zeros((128, 128, 160)) + np.asarray(volume.array)[..., :1], sagittal_affine(
        (128, 128, 160), (1.0, 1.0, 1.0)))
    assert localizer_search_slab(thin, foreground_mask(thin)) is None  # a 3D volume: all slices


def _shift(first: int) -> np.ndarray:
    shift = np.eye(4)
    shift[2, 3] = first
    return shift


def _random_masks(rng, count: int = 25):
    from scipy import ndimage

    for _ in range(count):
        shape = tuple(int(n) for n in rng.integers(2, 24, 3))
        yield ndimage.gaussian_filter(rng.random(shape), 1.5) > rng.uniform(0.45, 0.55)


def test_fast_closing_and_per_plane_filling_equal_scipy():
    """The head mask's closing and per-plane hole filling (medseg.masks) give scipy's masks,
    masks touching the array's border included, in either memory order."""
    from scipy import ndimage

    from medseg.masks import binary_closing, fill_holes_per_plane

    rng = np.random.default_rng(1)
    for mask in _random_masks(rng):
        for layout in (mask, np.asfortranarray(mask)):
            for iterations in (1, 2, 3):
                np.testing.assert_array_equal(binary_closing(layout, iterations),
                                              ndimage.binary_closing(mask, iterations=iterations))
            for axis in range(3):
                expected = ndimage.binary_fill_holes(mask)
                for k in range(mask.shape[axis]):
                    index = [slice(None)] * 3
                    index[axis] = k
                    expected[tuple(index)] = ndimage.binary_fill_holes(expected[tuple(index)])
                np.testing.assert_array_equal(fill_holes_per_plane(layout, axis), expected)
    assert not binary_closing(np.zeros((4, 4, 4), bool), 2).any()


def test_counted_percentiles_equal_numpy_over_the_whole_value_range():
    from medseg.masks import percentiles

    rng = np.random.default_rng(2)
    q = [0, 0.5, 1, 37.3, 50, 99, 99.5, 100]
    for dtype, low, high in ((np.int16, -32768, 32767), (np.uint16, 0, 65535), (np.uint8, 0, 255),
                             (np.int32, -5, 40), (np.int16, 7, 8)):
        values = rng.integers(low, high, size=int(rng.integers(1, 5000)), endpoint=True).astype(dtype)
        np.testing.assert_allclose(percentiles(values.reshape(-1, 1), q), np.percentile(values, q),
                                   rtol=0, atol=1e-9)
    floats = rng.random(100).astype(np.float32)
    np.testing.assert_array_equal(percentiles(floats, q), np.percentile(floats, q))
