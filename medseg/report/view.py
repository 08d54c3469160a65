"""Interactive review pages (``view.html``) for one positioned series or one spine composite.

A page opens offline from ``file://``: the volumes are embedded as base64 NIfTI (Chromium does not
let a ``file://`` page fetch its neighbours), and NiiVue (vendored from npm, see
``static/NIIVUE_LICENSE.txt``) is loaded from one shared ``niivue.umd.js`` that
:func:`write_niivue` writes beside the run's ``index.html``.

- positioning: the image with the brain mask (blue) and the CC mask (red) as overlays, the planned
  axial stack as a yellow box (spanning the brain in the plan's frame) with its central slice, and
  the mid-sagittal plane in cyan, both as NiiVue meshes; the angles as text.
- composite: the composed spine with every station seam (the middle of each overlap) as a
  yellow plane in an overlay volume.

Query options (for review and tests): ``?layout=sagittal|multiplanar|render`` and
``?hide=cc,brain,meshes,seams`` and ``?crosshair=0`` (no crosshair, no orientation letters).
The body gets ``data-ready="1"`` once NiiVue has drawn, or
``data-error`` with the message.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import os
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.spatialimages import SpatialImage

from medseg.io.atomic import write_text_atomic

NIIVUE = "niivue.umd.js"
_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])
Triangles = list[tuple[int, int, int]]  # corner indices of a mesh's triangles


def write_niivue(folder: Path) -> Path:
    """Write the vendored NiiVue bundle into ``folder`` (once; it is 2.3 MB) and return its path."""
    target = Path(folder) / NIIVUE
    data = gzip.decompress((resources.files("medseg.report") / "static" / (NIIVUE + ".gz")).read_bytes())
    if not target.exists() or target.stat().st_size != len(data):
        from medseg.io.atomic import atomic_path

        with atomic_path(target, suffix=".js") as temp:
            Path(temp).write_bytes(data)
    return target


def _display_nifti(path: Path, *, label: bool = False) -> nib.Nifti1Image:
    """A NIfTI for display: uint8 for masks; int16 for images whose range allows it, else float32."""
    image = nib.load(str(path))
    if not isinstance(image, SpatialImage):  # e.g. CIFTI or GIFTI: no voxel grid, no affine
        raise ValueError(f"{Path(path).name}: not a spatial image but {type(image).__name__}")
    array = np.asanyarray(image.dataobj)
    if array.ndim == 4:
        array = array[..., 0]
    if label:
        array = (array > 0).astype(np.uint8)
    else:
        array = np.nan_to_num(np.asarray(array, dtype=np.float32))
        lo, hi = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
        if hi - lo >= 256 and lo >= -32768 and hi <= 32767:
            array = np.rint(array).astype(np.int16)
    out = nib.Nifti1Image(array, image.affine)
    out.set_qform(image.affine, code=1)
    out.set_sform(image.affine, code=1)
    return out


def _b64(image: nib.Nifti1Image) -> str:
    return base64.b64encode(gzip.compress(image.to_bytes(), compresslevel=6)).decode("ascii")


def _world_points(image: nib.Nifti1Image, mask: np.ndarray, limit: int = 200_000) -> np.ndarray:
    """LPS world coordinates (mm) of the True voxels of ``mask`` (subsampled to ``limit``)."""
    ijk = np.argwhere(mask)
    if len(ijk) > limit:
        ijk = ijk[:: len(ijk) // limit + 1]
    ras = ijk @ image.affine[:3, :3].T + image.affine[:3, 3]
    return ras * _LPS_TO_RAS


def _mesh(name: str, corners: list[np.ndarray], faces: Triangles, rgba: list[int],
          opacity: float) -> dict:
    """A NiiVue mesh in RAS mm; every triangle is written in both windings (visible from both sides)."""
    pts = [float(x) for c in corners for x in np.asarray(c) * _LPS_TO_RAS]
    tris = [i for f in faces for i in (*f, f[0], f[2], f[1])]
    return {"name": name, "pts": pts, "tris": tris, "rgba": rgba, "opacity": opacity}


def position_meshes(result: dict, brain_points_lps: np.ndarray | None) -> list[dict]:
    """The planned axial stack (box and central slice) and the mid-sagittal plane, from result.json.

    The box spans the brain (or, without a brain mask, 120 x 180 x 140 mm) in the plan's frame:
    along the left-right row direction, the anterior-posterior column direction and the normal.
    """
    plan = result["axial_plan"]
    c = np.array(plan["center_mm"], float)
    row, col, normal = (np.array(plan[k], float) for k in ("row_direction", "column_direction", "normal"))
    axes = np.stack([row, col, normal])
    if brain_points_lps is not None and len(brain_points_lps):
        local = (brain_points_lps - c) @ axes.T
        lo, hi = local.min(axis=0), local.max(axis=0)
    else:
        lo, hi = np.array([-60.0, -90.0, -60.0]), np.array([60.0, 90.0, 80.0])
    half = (hi - lo) / 2
    mid_local = (lo + hi) / 2
    box = []
    for axis in range(3):  # the stack's six faces, each a 2 mm slab so that 2D views show its outline
        for side in (lo[axis], hi[axis]):
            centre, size = mid_local.copy(), half.copy()
            centre[axis], size[axis] = side, 1.0
            box.append(_slab(c + axes.T @ centre, axes, size))
    stack = _merge("planned axial stack", box, [255, 210, 0, 255], 0.35)
    central = _merge("central planned slice", [_slab(c + axes.T @ np.array([mid_local[0], mid_local[1], 0.0]),
                                                     axes, np.array([half[0] + 5, half[1] + 5, 1.0]))],
                     [255, 210, 0, 255], 0.9)
    mid = result["midsagittal"]
    n = np.array(mid["normal"], float)
    n /= np.linalg.norm(n)
    u = np.cross(n, [0.0, 0.0, 1.0])
    u = u / np.linalg.norm(u) if np.linalg.norm(u) > 1e-6 else np.array([0.0, 1.0, 0.0])
    v = np.cross(n, u)
    sagittal = _merge("mid-sagittal plane", [_slab(np.asarray(mid["point_mm"], float), np.stack([n, u, v]),
                                                   np.array([1.0, max(half[1], 75) + 10, max(half[2], 75) + 10]))],
                      [0, 220, 255, 255], 0.25)
    return [stack, central, sagittal]


def _slab(centre: np.ndarray, axes: np.ndarray, half: np.ndarray) -> tuple[list[np.ndarray], Triangles]:
    """Corners and triangles of a box centred at ``centre`` with half-sizes ``half`` along ``axes`` rows."""
    corners = [centre + axes.T @ (half * np.array([a, b, d])) for d in (-1, 1) for b in (-1, 1) for a in (-1, 1)]
    faces: Triangles = [(0, 1, 3), (0, 3, 2), (4, 6, 7), (4, 7, 5), (0, 4, 5), (0, 5, 1),
             (2, 3, 7), (2, 7, 6), (0, 2, 6), (0, 6, 4), (1, 5, 7), (1, 7, 3)]
    return corners, faces


def _merge(name: str, parts: list[tuple[list[np.ndarray], Triangles]], rgba: list[int], opacity: float) -> dict:
    corners: list[np.ndarray] = []
    faces: Triangles = []
    for part_corners, part_faces in parts:
        n = len(corners)
        faces += [(a + n, b + n, c + n) for a, b, c in part_faces]
        corners += part_corners
    return _mesh(name, corners, faces, rgba, opacity)


def _figures_position(result: dict) -> list[tuple[str, str]]:
    angles, plan = result["angles"], result["axial_plan"]
    brain = result.get("brain") or {}
    rows = [("final angle", f"{angles['final']['angle_deg']:+.2f}°"),
            ("box / line", f"{angles['box']['angle_deg']:+.2f}° / {angles['line']['angle_deg']:+.2f}° "
                           f"(difference {angles['box_line_difference_deg']:.2f}°"
                           + (")" if angles["consistent"] else ", INCONSISTENT)")),
            ("plan pitch / roll / yaw", f"{plan['pitch_deg']:+.2f}° / {plan['roll_deg']:+.2f}° / "
                                        f"{plan['yaw_deg']:+.2f}°"),
            ("CC area", f"{result['measurements'].get('area_mm2', result['segmentation']['area_mm2']):.0f} mm²"),
            ("CC confidence", f"{result['segmentation']['confidence']:.3f}"),
            ("mid-sagittal", f"{result['midsagittal']['kind']}, normal "
                             + ", ".join(f"{x:+.3f}" for x in result["midsagittal"]["normal"]))]
    if "volume_ml" in brain:
        rows.append(("brain volume", f"{brain['volume_ml']:.0f} ml"))
    elif brain.get("error"):
        rows.append(("brain mask", brain["error"]))
    return rows


def write_position_view(series_dir: Path, niivue_js: Path) -> Path:
    """Write ``series_dir/view.html`` from the positioning outputs in that folder."""
    series_dir = Path(series_dir)
    result = json.loads((series_dir / "result.json").read_text())
    image_path = series_dir / "image.nii.gz"
    if not image_path.exists():
        raise FileNotFoundError(f"{image_path}: no image for the review page (positioning outputs "
                                "written by an older medseg)")
    cc = _display_nifti(series_dir / "cc_mask.nii.gz", label=True)
    cc_points = _world_points(cc, np.asarray(cc.dataobj) > 0)
    volumes = [{"name": "image.nii.gz", "data": _b64(_display_nifti(image_path)), "colormap": "gray",
                "opacity": 1.0, "key": "image"}]
    brain_points = None
    if (series_dir / "brain_mask.nii.gz").exists():
        brain = _display_nifti(series_dir / "brain_mask.nii.gz", label=True)
        brain_points = _world_points(brain, np.asarray(brain.dataobj) > 0)
        volumes.append({"name": "brain_mask.nii.gz", "data": _b64(brain), "colormap": "blue",
                        "opacity": 0.2, "key": "brain", "cal": [0.5, 1.0]})
    volumes.append({"name": "cc_mask.nii.gz", "data": _b64(cc), "colormap": "red", "opacity": 1.0,
                    "key": "cc", "cal": [0.5, 1.0]})
    focus = (cc_points.mean(axis=0) if len(cc_points) else np.array(result["axial_plan"]["center_mm"])) * _LPS_TO_RAS
    meta = result["input"]
    payload = {"volumes": volumes, "meshes": position_meshes(result, brain_points),
               "focus_ras": [float(x) for x in focus], "layout": "multiplanar"}
    title = f"{meta.get('series_number') or ''} {meta.get('description') or series_dir.name}".strip()
    legend = ("<span style='color:#f33'>&#9632; CC</span> <span style='color:#68f'>&#9632; brain</span> "
              "<span style='color:#fd0'>&#9632; planned axial stack</span> "
              "<span style='color:#0df'>&#9632; mid-sagittal plane</span>")
    return _write_page(series_dir / "view.html", title, _figures_position(result), legend, payload, niivue_js)


def seam_positions(stitch: dict) -> list[float]:
    """Head-foot positions (LPS z, mm) of the seams: the middle of each pair of neighbouring
    stations' placed overlap (station extents plus their registration corrections)."""
    extents = [(lo + s["correction_mm"][2], hi + s["correction_mm"][2])
               for s in stitch["stations"] for lo, hi in [sorted(s["head_foot_extent_mm"])]]
    seams = []
    for (lo_a, hi_a), (lo_b, hi_b) in zip(extents, extents[1:]):
        lo, hi = max(lo_a, lo_b), min(hi_a, hi_b)
        seams.append((lo + hi) / 2 if lo <= hi else (min(hi_a, hi_b) + max(lo_a, lo_b)) / 2)
    return seams


def _seam_volume(image: nib.Nifti1Image, seams: list[float]) -> nib.Nifti1Image:
    """A label volume on the composite's grid: 1 within one and a half voxels of a seam's z (a 3-voxel line)."""
    shape = image.shape[:3]
    ijk = np.indices(shape).reshape(3, -1).T
    z = ijk @ image.affine[2, :3] + image.affine[2, 3]  # RAS z = LPS z
    step = float(np.abs(image.affine[2, :3]).max()) or 1.0
    label = np.zeros(len(z), np.uint8)
    for seam in seams:
        label[np.abs(z - seam) <= 1.5 * step + 1e-6] = 1
    out = nib.Nifti1Image(label.reshape(shape), image.affine)
    out.set_qform(image.affine, code=1)
    out.set_sform(image.affine, code=1)
    return out


def write_composite_view(composite_dir: Path, niivue_js: Path) -> Path:
    """Write ``composite_dir/view.html`` from composite.nii.gz and stitch.json in that folder."""
    composite_dir = Path(composite_dir)
    stitch = json.loads((composite_dir / "stitch.json").read_text())
    image = _display_nifti(composite_dir / "composite.nii.gz")
    seams = seam_positions(stitch)
    volumes = [{"name": "composite.nii.gz", "data": _b64(image), "colormap": "gray", "opacity": 1.0,
                "key": "image"},
               {"name": "seams.nii.gz", "data": _b64(_seam_volume(image, seams)), "colormap": "warm",
                "opacity": 1.0, "key": "seams", "cal": [0.5, 1.0]}]
    centre = image.affine @ np.array([*(np.array(image.shape[:3]) - 1) / 2, 1.0])
    payload = {"volumes": volumes, "meshes": [], "focus_ras": [float(x) for x in centre[:3]],
               "layout": "sagittal"}
    figures = [("stations", str(len(stitch["stations"]))),
               ("output", f"{stitch['output']['shape']} voxels of {stitch['output']['spacing_mm']} mm")]
    for i, (seam, overlap) in enumerate(zip(seams, stitch.get("overlaps", [])), start=1):
        ncc = overlap.get("ncc")
        figures.append((f"seam {i}", f"z = {seam:+.1f} mm (stations {overlap['stations'][0] + 1}/"
                                     f"{overlap['stations'][1] + 1}, overlap NCC "
                                     f"{'n/a' if ncc is None else f'{ncc:.3f}'})"))
    for gap in stitch.get("gaps", []):
        figures.append(("GAP", f"{gap.get('length_mm', 0):.1f} mm without data (filled with 0)"))
    for s in stitch["stations"]:
        correction = ", ".join(f"{x:+.2f}" for x in s["correction_mm"])
        figures.append((f"station {s['index'] + 1}", f"correction {correction} mm, {s['registration']}"))
    legend = "<span style='color:#fd0'>&#9632; station seams</span>"
    return _write_page(composite_dir / "view.html", f"spine composite {composite_dir.name}", figures, legend,
                       payload, niivue_js)


def _write_page(path: Path, title: str, figures: list[tuple[str, str]], legend: str, payload: dict,
                niivue_js: Path) -> Path:
    script = Path(os.path.relpath(Path(niivue_js).resolve(), path.parent.resolve())).as_posix()
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in figures)
    data = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    page = (_TEMPLATE.replace("@TITLE@", html.escape(title)).replace("@TABLE@", table)
            .replace("@LEGEND@", legend).replace("@SCRIPT@", html.escape(script)).replace("@DATA@", data))
    return write_text_atomic(path, page)


_TEMPLATE = """<!doctype html><html><head><meta charset="utf-8"><title>@TITLE@</title><style>
body{font-family:sans-serif;background:#111;color:#ddd;margin:0}
header{padding:.4em .8em}h1{font-size:1.1em;margin:.2em 0}
table{font-size:.85em;border-collapse:collapse}th{text-align:left;color:#999;padding-right:1em;font-weight:normal}
#gl{width:100vw;height:calc(100vh - 11em);min-height:300px;display:block}
.legend{font-size:.85em;margin:.3em 0}</style></head><body>
<header><h1>@TITLE@</h1><table>@TABLE@</table><div class="legend">@LEGEND@</div></header>
<canvas id="gl"></canvas>
<script id="medseg-data" type="application/json">@DATA@</script>
<script src="@SCRIPT@"></script>
<script>
(async () => {
  const body = document.body;
  try {
    const data = JSON.parse(document.getElementById("medseg-data").textContent);
    const query = new URLSearchParams(location.search);
    const hide = new Set((query.get("hide") || "").split(",").filter(Boolean));
    const layout = query.get("layout") || data.layout;
    const nv = new niivue.Niivue({backColor: [0, 0, 0, 1], show3Dcrosshair: false, isColorbar: false,
                                  crosshairColor: [1, 1, 1, 0.4], meshThicknessOn2D: 1.5,
                                  multiplanarShowRender: niivue.SHOW_RENDER.ALWAYS});
    await nv.attachToCanvas(document.getElementById("gl"));
    for (const v of data.volumes) {
      if (hide.has(v.key)) continue;
      const opts = {base64: v.data, name: v.name, colormap: v.colormap, opacity: v.opacity};
      if (v.cal) { opts.cal_min = v.cal[0]; opts.cal_max = v.cal[1]; }
      nv.addVolume(await niivue.NVImage.loadFromBase64(opts));
    }
    if (!hide.has("meshes")) {
      for (const m of data.meshes) {
        nv.addMesh(new niivue.NVMesh(new Float32Array(m.pts), new Uint32Array(m.tris), m.name,
                                     new Uint8Array(m.rgba), m.opacity, true, nv.gl));
      }
    }
    nv.scene.crosshairPos = nv.mm2frac(data.focus_ras);
    if (query.get("crosshair") === "0") { nv.setCrosshairWidth(0); nv.opts.isOrientationTextVisible = false; }
    const types = {sagittal: nv.sliceTypeSagittal, axial: nv.sliceTypeAxial, coronal: nv.sliceTypeCoronal,
                   render: nv.sliceTypeRender, multiplanar: nv.sliceTypeMultiplanar};
    nv.setSliceType(types[layout] ?? nv.sliceTypeMultiplanar);
    nv.drawScene();
    requestAnimationFrame(() => requestAnimationFrame(() => { body.dataset.ready = "1"; }));
  } catch (error) {
    body.dataset.error = String(error && error.stack || error);
    console.error(error);
  }
})();
</script></body></html>
"""
