"""The stage runner of medseg.pipeline: each stage timed under its name, a failure stops the list."""

import dataclasses

import numpy as np
import pytest

from medseg.errors import InputError, MedsegError
from medseg.pipeline import POSITION, PREPROCESS, Case, Settings, find_foreground, run_stages, stages_for
from medseg.synth.phantom import HeadPhantom, sagittal_affine
from medseg.volume import Volume


def _phantom() -> Volume:
    shape, affine = (64, 64, 30), sagittal_affine((64, 64, 30), (3.0, 3.0, 4.0))
    image, _ = HeadPhantom(seed=1).sample(shape, affine, noise=0.01, bias=0.0)
    return Volume(image * 1000, affine)


def test_the_runner_times_each_stage_and_keeps_the_input_case():
    case = Case(_phantom(), Settings(n4="off"))
    done = run_stages(case, stages_for(PREPROCESS, case.settings))
    assert set(done.seconds) == {"mask", "n4", "total"}  # no stripper: no skull-stripping stage
    assert done.seconds["total"] >= done.seconds["mask"] + done.seconds["n4"]
    assert done.head is not None and done.head.any() and done.corrected is done.volume
    assert case.head is None and not case.seconds  # the input Case is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        done.head = None


def test_a_failing_stage_stops_the_list_and_names_itself():
    calls = []

    def fails(case):
        raise MedsegError("broken")

    def after(case):
        calls.append(case)
        return case

    with pytest.raises(MedsegError) as info:
        run_stages(Case(_phantom()), (("mask", find_foreground), ("broken", fails), ("after", after)))
    assert info.value.stage == "broken" and not calls
    with pytest.raises(InputError) as info:  # an error of its own stage keeps it
        run_stages(Case(Volume(np.full((8, 8, 8), 3.0), np.eye(4))), (("mask", find_foreground),))
    assert info.value.stage == InputError.stage


def test_the_position_list_extends_the_preprocess_list():
    names = [name for name, _ in POSITION]
    assert names[:3] == [name for name, _ in PREPROCESS] == ["mask", "n4", "skullstrip"]
    assert names[3:] == ["segment", "angles"]
