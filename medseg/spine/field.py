"""A smooth head-foot gain profile per station, fitted jointly on all overlaps.

Why: a station's intensity is not one gain times the anatomy. Each station is acquired at the
magnet's isocentre and its receive sensitivity falls off towards its own head and foot edges, so
the two stations of an overlap see it at opposite ends of their profiles: one gain per station
matches their mean but leaves a ramp across the overlap and a step between station centres.

Model: with ``u`` in [-1, 1] a station's own head-foot coordinate (-1 foot edge, +1 head edge,
0 the station's centre), station k's correction is one of two smooth forms:
- ``"log"``: ``exp(a_k + b_k u + c_k u**2)`` (a Gaussian-like sensitivity fall-off);
- ``"rational"``: ``exp(a_k) / (1 + b_k u + c_k u**2)`` (the inverse of a field quadratic in
  intensity, a parabolic fall-off).
Both fit the overlaps; they differ in how they extrapolate to the station's centre, which no
overlap sees, so both are fitted and the one that leaves the smaller overlap mismatch is kept.
In every overlap the robust log ratio of the two stations is measured per head-foot position
(median over foreground voxels of the same position, so anatomy cancels); one weighted
least-squares fit over all overlaps makes the corrected stations agree, which keeps the chain
consistent by construction. The reference station keeps its centre value (``a_ref = 0``). Ratios
alone cannot tell a field common to all stations (a tilt or bow along the whole spine) from
anatomy; the linear terms carry a ridge (a weak prior for a profile symmetric about the station's
centre, see RIDGE_LINEAR), which chooses the solution without such a common tilt. A real common
tilt is therefore not corrected: no overlap shows it. Rows are re-weighted by a Huber rule on
their residuals (flow, misregistered edges).

The profile is applied only when it makes the overlaps agree clearly better than one gain per
station (see :func:`profile_is_better`); otherwise the constant gains are kept and the report
says why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

# The slopes' ridge, relative to the total row weight. A station is acquired with its centre at
# the magnet's isocentre, so its fall-off is expected symmetric about its centre; a slope b (a
# ramp of about 2b across the station) costs like an overlap mismatch of sqrt(RIDGE_LINEAR) * b
# at every row. 1e-2 makes a ramp of the gain-ratio target's size (±5 % at the station's edges,
# b = 0.05) cost as much as the rows' own noise (0.5 %, MIN_ABSOLUTE_IMPROVEMENT): the overlaps
# must show a slope clearly before it is fitted. (At 1e-3, a tie-breaker only, the fit traded
# curvature for slope on noise: lumbar_07's middle station got a 4 % ramp its field does not have.)
RIDGE_LINEAR = 1e-2
MAX_FIELD_RANGE = 2.0  # max/min of a station's profile over its own extent
MIN_GAIN_IMPROVEMENT = 0.8  # profile mismatch must be below 0.8 x the constant gains' mismatch
MIN_ABSOLUTE_IMPROVEMENT = 0.005  # ... and lower by at least 0.5 % (the rows' own noise level)
MIN_POSITIONS = 8  # head-foot positions an overlap needs before three coefficients are fitted on it


@dataclass(frozen=True)
class StationProfile:
    """A correction along head-foot, u = (z - centre_mm) / half_length_mm:
    ``exp(log_gain + slope * u + curvature * u**2)`` (``form="log"``) or
    ``exp(log_gain) / (1 + slope * u + curvature * u**2)`` (``form="rational"``)."""

    log_gain: float = 0.0
    slope: float = 0.0
    curvature: float = 0.0
    centre_mm: float = 0.0
    half_length_mm: float = 1.0
    form: Literal["log", "rational"] = "log"

    def u(self, z_mm: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(z_mm, np.float64) - self.centre_mm) / self.half_length_mm, -1, 1)

    def log_multiplier(self, z_mm: np.ndarray) -> np.ndarray:
        u = self.u(z_mm)
        if self.form == "rational":
            return self.log_gain - np.log(np.maximum(1.0 + self.slope * u + self.curvature * u ** 2, 1e-6))
        return self.log_gain + self.slope * u + self.curvature * u ** 2

    def multiplier(self, z_mm: np.ndarray) -> np.ndarray:
        return np.exp(self.log_multiplier(z_mm))

    def range_ratio(self) -> float:
        """max/min of the profile over the station's extent."""
        values = self.log_multiplier(self.centre_mm + self.half_length_mm * np.linspace(-1, 1, 101))
        return float(np.exp(values.max() - values.min()))

    def edge_gain(self) -> float:
        """The correction at the station's edges (mean of both) relative to its centre: > 1 when
        the station was darker towards its edges."""
        edges = np.exp(self.log_multiplier(self.centre_mm + self.half_length_mm * np.array([-1.0, 1.0])))
        return float(edges.mean() / np.exp(self.log_multiplier(np.array([self.centre_mm]))[0]))

    def as_dict(self) -> dict:
        return {"form": self.form, "gain_at_centre": round(float(np.exp(self.log_gain)), 6),
                "slope": round(self.slope, 6), "curvature": round(self.curvature, 6),
                "edge_gain": round(self.edge_gain(), 4),
                "centre_mm": round(self.centre_mm, 3), "half_length_mm": round(self.half_length_mm, 3),
                "range_ratio": round(self.range_ratio(), 4)}


@dataclass(frozen=True)
class OverlapRows:
    """Per head-foot position of one overlap: z (mm), robust log(upper / lower) and its weight."""

    upper: int  # station index (head side)
    lower: int  # station index (foot side)
    z_mm: np.ndarray
    log_ratio: np.ndarray
    weight: np.ndarray


def overlap_rows(upper_values: np.ndarray, lower_values: np.ndarray, z_mm: np.ndarray,
                 valid: np.ndarray, *, upper: int, lower: int, bin_mm: float,
                 min_voxels: int = 30) -> OverlapRows:
    """The robust log ratio of two stations' values at the same voxels, per head-foot bin.

    Foreground only: both stations above 10 % of their 99th percentile (background noise carries
    no gain information); bins with fewer than ``min_voxels`` such voxels are dropped.
    """
    a = upper_values[valid].astype(np.float64)
    b = lower_values[valid].astype(np.float64)
    z = np.broadcast_to(np.asarray(z_mm), valid.shape)[valid].astype(np.float64)
    if a.size == 0:
        empty = np.zeros(0)
        return OverlapRows(upper, lower, empty, empty, empty)
    keep = (a > 0.1 * np.percentile(a, 99)) & (b > 0.1 * np.percentile(b, 99))
    a, b, z = a[keep], b[keep], z[keep]
    ratio = np.log(a) - np.log(b)
    bins = np.floor((z - z.min()) / bin_mm).astype(int) if z.size else np.zeros(0, int)
    order = np.argsort(bins, kind="stable")
    bins, ratio, z = bins[order], ratio[order], z[order]
    starts = np.flatnonzero(np.r_[True, np.diff(bins) > 0]) if bins.size else np.zeros(0, int)
    ends = np.r_[starts[1:], bins.size]
    rows_z, rows_r, rows_w = [], [], []
    for s, e in zip(starts, ends):
        if e - s < min_voxels:
            continue
        rows_z.append(float(z[s:e].mean()))
        rows_r.append(float(np.median(ratio[s:e])))
        rows_w.append(float(np.sqrt(e - s)))
    return OverlapRows(upper, lower, np.array(rows_z), np.array(rows_r), np.array(rows_w))


def mismatch(rows: OverlapRows, profiles: list[StationProfile]) -> float | None:
    """Weighted RMS over the overlap's positions of log(corrected upper / corrected lower):
    about the relative intensity mismatch left (0.01 = 1 %)."""
    if rows.z_mm.size == 0:
        return None
    residual = (rows.log_ratio + profiles[rows.upper].log_multiplier(rows.z_mm)
                - profiles[rows.lower].log_multiplier(rows.z_mm))
    return float(np.sqrt(np.sum(rows.weight * residual ** 2) / np.sum(rows.weight)))


def fit_profiles(overlaps: list[OverlapRows], extents: list[tuple[float, float]], reference: int
                 ) -> list[StationProfile]:
    """One profile per station such that the corrected stations agree in every overlap: both
    forms fitted, the one with the smaller overlap mismatch (RMS over overlaps) kept.

    Args:
        overlaps: rows of each overlap (stations by index into ``extents``).
        extents: (inferior, superior) z of each station (mm), which define its ``u``.
        reference: the station whose centre keeps its value.
    """
    log_form = _fit_log(overlaps, extents, reference)
    rational = _fit_rational(overlaps, extents, reference, log_form)
    if rational is None:
        return log_form

    def total(profiles: list[StationProfile]) -> float:
        values = [m for m in (mismatch(r, profiles) for r in overlaps) if m is not None]
        return float(np.sqrt(np.mean(np.square(values)))) if values else 0.0

    return rational if total(rational) < total(log_form) else log_form


def _fit_rational(overlaps: list[OverlapRows], extents: list[tuple[float, float]], reference: int,
                  start: list[StationProfile]) -> list[StationProfile] | None:
    """The ``"rational"`` form by robust non-linear least squares, started from the log form's
    first-order equivalent; None when the fit fails or leaves a field that is not positive."""
    usable = [rows for rows in overlaps if rows.z_mm.size >= 3]
    if not usable:
        return None
    count = len(extents)
    base = [replace(p, log_gain=0.0, slope=0.0, curvature=0.0, form="rational") for p in start]
    weight = np.sqrt(np.concatenate([r.weight for r in usable]))
    ridge = np.sqrt(RIDGE_LINEAR * np.sum(weight ** 2))
    others = [k for k in range(count) if k != reference]

    def profiles(x: np.ndarray) -> list[StationProfile]:
        a = np.zeros(count)
        a[others] = x[:count - 1]
        b, c = x[count - 1:2 * count - 1], x[2 * count - 1:]
        return [replace(base[k], log_gain=float(a[k]), slope=float(b[k]), curvature=float(c[k]))
                for k in range(count)]

    def residuals(x: np.ndarray) -> np.ndarray:
        p = profiles(x)
        parts = [r.log_ratio + p[r.upper].log_multiplier(r.z_mm) - p[r.lower].log_multiplier(r.z_mm)
                 for r in usable]
        return np.concatenate([np.concatenate(parts) * weight, ridge * x[count - 1:2 * count - 1]])

    x0 = np.concatenate([[start[k].log_gain for k in others], [-p.slope for p in start],
                         [-p.curvature for p in start]])
    x0[2 * count - 1:] = np.clip(x0[2 * count - 1:], -0.5, 2.0)
    lower = np.concatenate([np.full(count - 1, -np.inf), np.full(count, -0.5), np.full(count, -0.6)])
    upper = np.concatenate([np.full(count - 1, np.inf), np.full(count, 0.5), np.full(count, 3.0)])
    try:
        from scipy.optimize import least_squares  # imported when a field is fitted: 0.2 s at start-up

        fit = least_squares(residuals, np.clip(x0, lower + 1e-9, upper - 1e-9), bounds=(lower, upper),
                            loss="huber", f_scale=0.01 * float(np.mean(weight)))
    except (ValueError, np.linalg.LinAlgError):
        return None
    result = profiles(fit.x)
    u = np.linspace(-1, 1, 101)
    if not fit.success or any(np.min(1 + p.slope * u + p.curvature * u ** 2) <= 0.05 for p in result):
        return None
    return result


def _fit_log(overlaps: list[OverlapRows], extents: list[tuple[float, float]], reference: int,
             *, iterations: int = 4) -> list[StationProfile]:
    """The ``"log"`` form: linear in its parameters, solved by iteratively re-weighted least
    squares."""
    count = len(extents)
    centres = [0.5 * (lo + hi) for lo, hi in extents]
    halves = [max(0.5 * (hi - lo), 1e-3) for lo, hi in extents]
    base = [StationProfile(0.0, 0.0, 0.0, c, h) for c, h in zip(centres, halves)]
    usable = [rows for rows in overlaps if rows.z_mm.size >= 3]
    if not usable:
        return base
    # unknowns: a (count), b (count), c (count); a_reference is dropped (fixed at 0)
    columns = [k for k in range(3 * count) if k != reference]

    def design(rows: OverlapRows) -> np.ndarray:
        matrix = np.zeros((rows.z_mm.size, 3 * count))
        for station, sign in ((rows.upper, 1.0), (rows.lower, -1.0)):
            u = base[station].u(rows.z_mm)
            matrix[:, station] += sign
            matrix[:, count + station] += sign * u
            matrix[:, 2 * count + station] += sign * u ** 2
        return matrix

    a_rows = np.vstack([design(r) for r in usable])[:, columns]
    target = -np.concatenate([r.log_ratio for r in usable])
    weight = np.concatenate([r.weight for r in usable])
    ridge = np.zeros((count, 3 * count))
    ridge[np.arange(count), count + np.arange(count)] = 1.0
    ridge = ridge[:, columns] * np.sqrt(RIDGE_LINEAR * weight.sum())
    robust = np.ones_like(weight)
    solution = np.zeros(len(columns))
    for _ in range(iterations):
        w = np.sqrt(weight * robust)
        lhs = np.vstack([a_rows * w[:, None], ridge])
        rhs = np.concatenate([target * w, np.zeros(count)])
        solution = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
        residual = a_rows @ solution - target
        scale = 1.4826 * np.median(np.abs(residual - np.median(residual))) + 1e-6
        r = np.abs(residual) / (1.345 * scale)
        robust = np.where(r <= 1.0, 1.0, 1.0 / np.maximum(r, 1e-12))
    full = np.zeros(3 * count)
    full[columns] = solution
    return [StationProfile(float(full[k]), float(full[count + k]), float(full[2 * count + k]),
                           centres[k], halves[k]) for k in range(count)]


def constant_profiles(gains: list[float], extents: list[tuple[float, float]]) -> list[StationProfile]:
    """Constant gains as profiles (for comparing mismatches on the same rows)."""
    return [StationProfile(float(np.log(max(g, 1e-12))), 0.0, 0.0, 0.5 * (lo + hi),
                           max(0.5 * (hi - lo), 1e-3)) for g, (lo, hi) in zip(gains, extents)]


def profile_is_better(gain_mismatch: list[float | None], profile_mismatch: list[float | None],
                      profiles: list[StationProfile], positions: list[int] | None = None) -> tuple[bool, str]:
    """Whether to apply the profiles instead of constant gains, and why (``positions``: the
    head-foot positions measured in each overlap)."""
    pairs = [(g, p) for g, p in zip(gain_mismatch, profile_mismatch) if g is not None and p is not None]
    if not pairs:
        return False, "no overlap rows to fit a profile on: constant gains kept"
    if positions is not None and min(positions) < MIN_POSITIONS:
        return False, (f"an overlap holds {min(positions)} head-foot positions (< {MIN_POSITIONS}), too few "
                       "to fit a profile on: constant gains kept")
    worst = max(p.range_ratio() for p in profiles)
    if worst > MAX_FIELD_RANGE:
        return False, (f"profile rejected: a station's profile spans {worst:.2f}x "
                       f"(> {MAX_FIELD_RANGE}x): constant gains kept")
    gain = float(np.sqrt(np.mean([g ** 2 for g, _ in pairs])))
    profile = float(np.sqrt(np.mean([p ** 2 for _, p in pairs])))
    if profile < MIN_GAIN_IMPROVEMENT * gain and gain - profile > MIN_ABSOLUTE_IMPROVEMENT:
        return True, (f"profile applied: overlap mismatch {100 * profile:.2f} % vs {100 * gain:.2f} % "
                      "with constant gains")
    return False, (f"constant gains kept: the profile's overlap mismatch {100 * profile:.2f} % is not "
                   f"clearly below the constant gains' {100 * gain:.2f} %")
