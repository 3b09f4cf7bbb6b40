from __future__ import annotations

import numpy as np

from napari_organelle.postprocess import label_instances, probabilities_to_mask


def disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius ** 2


def test_touching_discs_are_split_into_two_objects():
    mask = disc((60, 100), (30, 30), 18) | disc((60, 100), (30, 62), 18)
    labels = label_instances(mask)
    assert labels.max() == 2
    assert labels.dtype == np.uint16
    # each disc centre belongs to a different object, and no pixel is lost
    assert labels[30, 30] != labels[30, 62]
    assert np.array_equal(labels > 0, mask)


def test_an_elongated_tube_stays_one_object():
    mask = np.zeros((40, 200), bool)
    mask[15:25, 10:190] = True  # a mitochondrion-like tube of constant width
    mask[14:26, 100:110] = True  # with a slight bulge
    assert label_instances(mask).max() == 1


def arc(shape, centre, radius, width, start_deg, stop_deg):
    """A curved tube: the part of a ring between two angles."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    distance = np.hypot(yy - centre[0], xx - centre[1])
    angle = np.degrees(np.arctan2(yy - centre[0], xx - centre[1]))
    return (np.abs(distance - radius) < width / 2) & (angle >= start_deg) & (angle <= stop_deg)


def test_curved_tubes_and_round_objects_are_not_cut_at_equal_peaks():
    # A curved tube's distance map peaks many times along its centre line at
    # *equal* heights (square roots of the same integers), with tiny dips between;
    # h-maxima keeps all of them, and before the saddle check each became an object.
    tube = arc((120, 120), (60, 60), 40, 9, -150, 150)
    assert label_instances(tube, min_size=20).max() == 1
    blob = disc((80, 80), (40, 40), 24.7) | disc((80, 80), (40, 41), 24.7)  # peaks at two pixels
    assert label_instances(blob).max() == 1
    # a real neck is still cut: two such tubes joined by a thin bridge
    pair = arc((120, 240), (60, 60), 40, 9, -60, 60) | arc((120, 240), (60, 180), 40, 9, 120, 240)
    pair[59:62, 95:146] = True  # 3 px wide: narrower than half the tubes' 9 px
    labels = label_instances(pair, min_size=20)
    assert labels.max() == 2 and labels[60, 100] != labels[60, 140]  # one per tube


def test_tiny_objects_are_removed_and_ids_are_compact():
    mask = np.zeros((50, 50), bool)
    mask[5:15, 5:15] = True
    mask[30, 30] = True  # one-pixel speck
    mask[35:45, 35:45] = True
    labels = label_instances(mask, min_size=5)
    assert sorted(np.unique(labels)) == [0, 1, 2]
    assert labels[30, 30] == 0


def test_many_objects_switch_to_32_bit_labels():
    mask = np.zeros((600, 600), bool)
    mask[::2, ::2] = True  # 90 000 isolated pixels
    labels = label_instances(mask, split_touching=False)
    assert labels.max() == 90000
    assert labels.dtype == np.uint32


def test_threshold_on_8_bit_probabilities_matches_float():
    probabilities = np.arange(256, dtype=np.uint8).reshape(16, 16)
    mask = probabilities_to_mask(probabilities, 0.5)
    np.testing.assert_array_equal(mask, (probabilities / 255 >= 0.5).astype(np.uint8))
