"""clasp_rs.geometry against SimpleITK's own index <-> physical transforms, on oblique,
mirrored, permuted and anisotropic geometries (hypothesis), and against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clasp_rs import Patch
from clasp_rs.exceptions import DatasetError
from clasp_rs.geometry import (
    GeometryTolerance,
    ImageGeometry,
    covering_box,
    geometry_mismatches,
    lps_to_ras,
    physical_box,
)
from geometry_cases import geometries, patches_in, sitk_image

sitk = pytest.importorskip("SimpleITK")


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_index_to_lps_is_simpleitk_continuous_transform(data):
    geometry = data.draw(geometries())
    image = sitk_image(geometry)
    points = data.draw(
        st.lists(st.tuples(*(st.floats(-3, n + 2) for n in geometry.size)), min_size=1, max_size=5)
    )
    ours = geometry.to_lps(np.asarray(points))
    for p, mine in zip(points, ours, strict=True):
        theirs = image.TransformContinuousIndexToPhysicalPoint([float(v) for v in p])
        np.testing.assert_allclose(mine, theirs, atol=1e-9)
        np.testing.assert_allclose(
            geometry.to_index(mine),
            image.TransformPhysicalPointToContinuousIndex(theirs),
            atol=1e-9,
        )
    assert ImageGeometry.of(image) == geometry
    back = ImageGeometry.from_index_to_lps(geometry.index_to_lps, geometry.size)
    np.testing.assert_allclose(back.index_to_lps, geometry.index_to_lps, atol=1e-12)


@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_physical_corners_map_back_to_exactly_the_patch_voxels(data):
    geometry = data.draw(geometries())
    patch = data.draw(patches_in(geometry.shape))
    image = sitk_image(geometry)
    box = physical_box(patch, geometry)
    z, y, x = patch.coords
    ez, ey, ex = patch.end
    # The two extreme corners, through SimpleITK: continuous index start - 0.5, end - 0.5.
    np.testing.assert_allclose(
        image.TransformPhysicalPointToContinuousIndex(box.start),
        (x - 0.5, y - 0.5, z - 0.5),
        atol=1e-9,
    )
    np.testing.assert_allclose(
        image.TransformPhysicalPointToContinuousIndex(box.end),
        (ex - 0.5, ey - 0.5, ez - 0.5),
        atol=1e-9,
    )
    # Nudged a little towards the centre, the corners fall into the first and last voxel.
    centre = np.asarray(box.centre)
    step = 0.25 / max(patch.size)
    first = image.TransformPhysicalPointToIndex(tuple(box.start + step * (centre - box.start)))
    last = image.TransformPhysicalPointToIndex(tuple(box.end + step * (centre - box.end)))
    assert first == (x, y, z)
    assert last == (ex - 1, ey - 1, ez - 1)
    # All eight corners: bit a of corner c picks the end on index axis a.
    for c, corner in enumerate(box.corners):
        expected = [
            (e if (c >> a) & 1 else s) - 0.5
            for a, (s, e) in enumerate(zip((x, y, z), (ex, ey, ez), strict=True))
        ]
        np.testing.assert_allclose(
            image.TransformPhysicalPointToContinuousIndex(tuple(corner)), expected, atol=1e-9
        )
    np.testing.assert_allclose(
        box.extent, np.asarray(patch.size[::-1]) * np.asarray(geometry.spacing), rtol=1e-12
    )


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_voxel_centres_inside_the_physical_box_are_the_patch(data):
    """Brute force: every voxel centre (from SimpleITK) tested against the oriented box."""
    geometry = data.draw(geometries(max_size=7))
    patch = data.draw(patches_in(geometry.shape))
    image = sitk_image(geometry)
    box = physical_box(patch, geometry)
    origin = box.corners[0]
    edges = np.stack([box.corners[1] - origin, box.corners[2] - origin, box.corners[4] - origin])
    inside = np.zeros(geometry.shape, dtype=bool)
    for k, j, i in itertools.product(*(range(n) for n in geometry.shape)):
        p = np.asarray(image.TransformIndexToPhysicalPoint((i, j, k))) - origin
        u = np.linalg.solve(edges.T, p)
        inside[k, j, i] = bool(np.all((u > 0) & (u < 1)))
    expected = np.zeros(geometry.shape, dtype=bool)
    z, y, x = patch.coords
    dz, dy, dx = patch.size
    expected[z : z + dz, y : y + dy, x : x + dx] = True
    assert np.array_equal(inside, expected)


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_covering_box_on_a_resampled_grid(data):
    """A patch on a resampled grid (same direction and centre, other spacing) maps onto the
    smallest box of the original grid whose voxels reach into it; the nearest original
    voxel of every resampled patch voxel lies inside it."""
    original = data.draw(geometries(max_size=10))
    factors = [data.draw(st.sampled_from([0.5, 2 / 3, 1.0, 1.5, 2.0, 3.0])) for _ in range(3)]
    new_spacing = np.asarray(original.spacing) * np.asarray(factors)
    extent = np.asarray(original.size) * np.asarray(original.spacing)
    new_size = np.maximum(1, np.round(extent / new_spacing)).astype(int)
    shift = ((np.asarray(original.size) - 1) * original.spacing - (new_size - 1) * new_spacing) / 2
    new_origin = np.asarray(original.origin) + original.direction_matrix @ shift
    resampled = ImageGeometry(
        tuple(int(v) for v in new_size),  # type: ignore[arg-type]
        tuple(float(v) for v in new_spacing),  # type: ignore[arg-type]
        tuple(float(v) for v in new_origin),  # type: ignore[arg-type]
        original.direction,
    )
    patch = data.draw(patches_in(resampled.shape))
    mapped = covering_box(patch, resampled, original)
    # Reference: per original axis, the voxels whose extent overlaps the box's interval.
    lo_hi = original.to_index(physical_box(patch, resampled).corners)
    lo, hi = lo_hi.min(axis=0), lo_hi.max(axis=0)
    expect_lo = [max(0, int(np.floor(v + 0.5 + 1e-6))) for v in lo]
    expect_hi = [
        min(n, int(np.ceil(v + 0.5 - 1e-6))) for v, n in zip(hi, original.size, strict=True)
    ]
    for a in range(3):  # brute force over the voxels of each axis
        touching = [
            v for v in range(original.size[a]) if v + 0.5 > lo[a] + 1e-6 and v - 0.5 < hi[a] - 1e-6
        ]
        assert (touching[0], touching[-1] + 1) == (expect_lo[a], expect_hi[a])
    assert mapped.coords == (expect_lo[2], expect_lo[1], expect_lo[0])
    assert mapped.end == (expect_hi[2], expect_hi[1], expect_hi[0])
    z, y, x = patch.coords
    for k, j, i in itertools.product(
        *(range(s, e) for s, e in zip(patch.coords, patch.end, strict=True))
    ):
        centre = resampled.to_lps([i, j, k])
        near = np.rint(original.to_index(centre)).astype(int)[::-1]
        near = np.clip(near, 0, np.asarray(original.shape) - 1)
        assert all(c <= v < e for c, v, e in zip(mapped.coords, near, mapped.end, strict=True)), (
            patch,
            mapped,
            (k, j, i),
            near,
        )
    assert covering_box(patch, resampled, resampled) == patch
    del x, y


def test_covering_box_outside_the_target_is_an_error():
    g = ImageGeometry((4, 4, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    far = ImageGeometry((4, 4, 4), (1.0, 1.0, 1.0), (100.0, 0.0, 0.0), g.direction)
    with pytest.raises(DatasetError, match="lies outside the image"):
        covering_box(Patch("c", (0, 0, 0), (2, 2, 2)), far, g)


def test_mismatches_name_each_property():
    g = ImageGeometry((5, 6, 7), (1.0, 2.0, 3.0), (10.0, -20.0, 30.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert geometry_mismatches(g, g) == []
    # within tolerance: float32 header noise
    noisy = ImageGeometry(g.size, (1.00001, 2.0, 3.0), (10.0001, -20.0, 30.0), g.direction)
    assert geometry_mismatches(noisy, g) == []
    cases = {
        "size": ImageGeometry((5, 6, 8), g.spacing, g.origin, g.direction),
        "spacing": ImageGeometry(g.size, (1.0, 2.0, 3.1), g.origin, g.direction),
        "origin": ImageGeometry(g.size, g.spacing, (10.0, -20.0, 31.0), g.direction),
        "direction": ImageGeometry(g.size, g.spacing, g.origin, (-1, 0, 0, 0, 1, 0, 0, 0, 1)),
    }
    for name, other in cases.items():
        problems = geometry_mismatches(other, g)
        assert len(problems) == 1 and problems[0].startswith(name), problems
    strict = GeometryTolerance(spacing=0, origin=0, direction=0)
    assert len(geometry_mismatches(noisy, g, strict)) == 2


def test_ras_is_lps_with_x_and_y_negated():
    assert lps_to_ras([1.0, 2.0, 3.0]).tolist() == [-1.0, -2.0, 3.0]
    assert lps_to_ras(np.ones((2, 8, 3)))[..., :2].max() == -1.0


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_cropped_geometry_is_what_simpleitk_region_of_interest_gives(data):
    geometry = data.draw(geometries())
    patch = data.draw(patches_in(geometry.shape))
    image = sitk_image(geometry)
    crop = sitk.RegionOfInterest(image, list(patch.size[::-1]), list(patch.coords[::-1]))
    ours = geometry.cropped(patch.coords, patch.size)
    theirs = ImageGeometry.of(crop)
    assert ours.size == theirs.size
    assert geometry_mismatches(ours, theirs, GeometryTolerance(1e-12, 1e-9, 1e-12)) == []
