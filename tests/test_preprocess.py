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
