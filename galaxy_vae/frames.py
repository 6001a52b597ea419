"""Raw 423 px Galaxy Zoo frames: reading them, a cached pyramid of them, and rendering any view of a
galaxy from its frame -- rotated, mirrored, zoomed out or in, shifted -- exactly where the catalogue
cut it. The similarity encoder trains on these views; ``evaluate --robustness`` re-cuts its queries
from the same frames.

Geometry. A catalogue image is the central 207/424 of a 423 px frame, box-resampled to 69 px; the
models see its central 64 px (rows/cols 2..65). In frame pixel coordinates (pixel i spans [i, i+1))
the model's view is the square of side ``STANDARD_FOV`` = 64 * S69 = 191.55 px, S69 = 423 * 207 /
424 / 69, centred at ``VIEW_CENTRE`` = 210.0 (half a stored pixel up-left of the frame centre).
``Renderer`` with identity parameters reproduces the catalogue's 64 px view (a test checks it).

Rendering. Each output pixel averages ss x ss bilinear samples (an area filter, as PIL's BOX), taken
from the pyramid level whose pixels are no larger than the sample spacing, so shrinking never
aliases: the frame downscaled by sqrt(2) steps (``LEVEL_SIDES``). Level 0 keeps only the central 320
px (``LEVEL_CROP``), which holds every view narrower than the standard one at any rotation.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from galaxy_vae.errors import DataError

log = logging.getLogger(__name__)

RAW = 423  # side of a raw Galaxy Zoo frame, px
CATALOGUE_SIDE = RAW * 207 / 424  # the catalogue's 69 px cut, in frame px (206.51)
S69 = CATALOGUE_SIDE / 69  # frame px per stored pixel (2.993)
OUT = 64  # the models' input side
STANDARD_FOV = OUT * S69  # frame px the 64 px model view covers (191.55)
VIEW_CENTRE = (RAW - CATALOGUE_SIDE) / 2 + (2 + OUT / 2) * S69  # 210.0: centre of that view
LEVEL_SIDES = (423, 299, 212, 150, 106, 75)  # the frame in sqrt(2) steps
LEVEL_CROP = (52, 320)  # level 0 stores px 52..372 only (views narrower than 0.95x the standard)
FRAME_SUFFIXES = (".jpeg", ".jpg", ".png")


def _stored(level: int) -> tuple[int, int]:
    """(first stored px, stored side) of pyramid ``level``."""
    return LEVEL_CROP if level == 0 else (0, LEVEL_SIDES[level])


# --- frames on disk -----------------------------------------------------------------------------

def frame_file(folder: Path, obj_id: str) -> Path | None:
    """The frame of galaxy ``obj_id`` in ``folder`` (<objID>.jpeg, .jpg or .png); None if absent."""
    for suffix in FRAME_SUFFIXES:
        path = Path(folder) / f"{obj_id}{suffix}"
        if path.is_file():
            return path
    return None


def read_frame(folder: Path, obj_id: str) -> Image.Image:
    """Galaxy ``obj_id``'s raw frame as RGB; a DataError when it is missing or not 423 x 423 px."""
    path = frame_file(folder, obj_id)
    if path is None:
        raise DataError(f"No raw frame for galaxy {obj_id}", expected=f"{obj_id}.jpeg in {folder}",
                        found="no such file", fix="Point $GALAXY_VAE_FRAMES at the folder of 423 px frames.")
    with Image.open(path) as img:
        if img.size != (RAW, RAW):
            raise DataError(f"Raw frame {path.name} has the wrong size", expected=f"{RAW} x {RAW} px",
                            found=f"{img.size[0]} x {img.size[1]} px",
                            fix="Use the Galaxy Zoo frames the catalogue was cut from.")
        return img.convert("RGB")


def frames_present(folder: Path | None, ids) -> np.ndarray:
    """(N,) bool: which galaxies of ``ids`` have a frame in ``folder``."""
    if folder is None or not Path(folder).is_dir():
        return np.zeros(len(ids), dtype=bool)
    names = {p.stem for p in Path(folder).iterdir() if p.suffix.lower() in FRAME_SUFFIXES}
    return np.array([str(i) in names for i in ids], dtype=bool)


def _levels_of(args: tuple[str, str]) -> tuple[np.ndarray, ...]:
    img = read_frame(Path(args[0]), args[1])
    out = []
    for level, side in enumerate(LEVEL_SIDES):
        start, n = _stored(level)
        scaled = np.asarray(img if side == RAW else img.resize((side, side), Image.Resampling.BOX))
        out.append(scaled[start:start + n, start:start + n])
    return tuple(out)


def pyramid_key(folder: Path, ids) -> str:
    """What a cached pyramid depends on: the frames (name, size, modification time) and the layout."""
    h = hashlib.sha1(repr((LEVEL_SIDES, LEVEL_CROP)).encode())
    for obj_id in ids:
        path = frame_file(folder, str(obj_id))
        st = path.stat() if path else None
        h.update(f"{obj_id}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1};".encode())
    return h.hexdigest()[:16]


def build_pyramid(folder: Path, ids, cache: Path, processes: int = 2, progress: bool = True) -> list[np.ndarray]:
    """The pyramid of the frames of ``ids`` (in that order), one (N, side, side, 3) uint8 array per
    level, memory-mapped from ``cache``/<key>/; built there once (atomically, with a progress bar)."""
    ids = [str(i) for i in ids]
    where = Path(cache) / pyramid_key(folder, ids)
    files = [where / f"level{k}.npy" for k in range(len(LEVEL_SIDES))]
    if not all(f.is_file() for f in files):
        where.mkdir(parents=True, exist_ok=True)
        tmp = [where / f".level{k}.{os.getpid()}.npy" for k in range(len(LEVEL_SIDES))]
        outs = [np.lib.format.open_memmap(t, mode="w+", dtype=np.uint8, shape=(len(ids), _stored(k)[1],
                                                                               _stored(k)[1], 3))
                for k, t in enumerate(tmp)]
        jobs = [(str(folder), i) for i in ids]
        with ProcessPoolExecutor(max(1, processes)) as pool:  # decoding JPEGs is the cost
            done = pool.map(_levels_of, jobs, chunksize=16) if processes > 1 else map(_levels_of, jobs)
            for row, levels in enumerate(tqdm(done, total=len(ids), desc="reading raw frames", unit="frame",
                                              disable=not progress)):
                for out, level in zip(outs, levels):
                    out[row] = level
        for out, t, f in zip(outs, tmp, files):
            out.flush()
            del out
            os.replace(t, f)
        log.info("cached the pyramid of %d frames in %s", len(ids), where)
    return [np.load(f, mmap_mode="r") for f in files]


# --- views --------------------------------------------------------------------------------------

def identity_views(n: int) -> dict[str, torch.Tensor]:
    """Geometric parameters of the catalogue's own 64 px view, for n galaxies."""
    return {"fov": torch.ones(n), "angle": torch.zeros(n), "flip": torch.zeros(n), "shift": torch.zeros(n, 2)}


class Renderer:
    """Views of frames from their pyramid: ``renderer(rows, params)`` -> (B, 3, 64, 64) in [0, 1].

    ``params``: fov (B,) multiple of the standard field of view, angle (B,) radians, flip (B,) 0/1
    mirror, shift (B, 2) output px. Buffers are reused between chunks: a fresh 50-100 MB tensor per
    batch costs more in page faults than the resampling itself.
    """

    def __init__(self, levels: list[np.ndarray], supersample: int = 2, chunk: int = 64):
        self.levels = [torch.from_numpy(np.array(lv)) for lv in levels]  # (N, s, s, 3) uint8, read into memory
        self.ss, self.chunk = supersample, chunk
        self.px = [RAW / side for side in LEVEL_SIDES]  # frame px per level px
        self.origin = [_stored(k)[0] * self.px[k] for k in range(len(LEVEL_SIDES))]  # frame px
        big = max(lv.shape[1] for lv in levels)
        self.u8 = torch.empty(chunk * big * big * 3, dtype=torch.uint8)
        self.f32 = torch.empty(chunk * big * big * 3)

    def __len__(self) -> int:
        return len(self.levels[0])

    def __call__(self, rows: np.ndarray, params: dict[str, torch.Tensor]) -> torch.Tensor:
        rows = np.asarray(rows, dtype=np.int64)
        out = torch.empty(len(rows), 3, OUT, OUT)
        for start in range(0, len(rows), self.chunk):
            part = slice(start, start + self.chunk)
            out[part] = self._chunk(rows[part], {k: v[part] for k, v in params.items()})
        return out

    def _chunk(self, rows: np.ndarray, p: dict[str, torch.Tensor]) -> torch.Tensor:
        b, m = len(rows), OUT * self.ss
        scale = p["fov"] * (STANDARD_FOV / OUT)  # frame px per output px, (b,)
        level = torch.zeros(b, dtype=torch.long)  # the coarsest level with pixels <= the sample spacing
        for k, px in enumerate(self.px):
            level[scale / self.ss >= px * 0.999] = k
        cos, sin, mirror = torch.cos(p["angle"]), torch.sin(p["angle"]), 1 - 2 * p["flip"]
        cx, cy = VIEW_CENTRE + p["shift"][:, 0] * scale, VIEW_CENTRE + p["shift"][:, 1] * scale
        half = scale * OUT / 2  # half the view's side, frame px
        reach = half * (cos.abs() + sin.abs()) + 2 * scale  # half the rotated view's bounding box
        fine = torch.empty(b, 3, m, m)
        for k in level.unique().tolist():
            sel = torch.nonzero(level == k).flatten()
            px, origin, side = self.px[k], self.origin[k], self.levels[k].shape[1]
            # one square window (level px) holding every view of the group: only it becomes float
            lo = max(int(math.floor(float(((torch.minimum(cx, cy) - reach)[sel].min() - origin) / px))), 0)
            hi = min(int(math.ceil(float(((torch.maximum(cx, cy) + reach)[sel].max() - origin) / px))), side)
            w, n = hi - lo, len(sel)
            u8 = self.u8[: n * w * w * 3].view(n, w, w, 3)
            for j, r in enumerate(rows[sel.numpy()]):
                u8[j] = self.levels[k][int(r), lo:hi, lo:hi]
            x = self.f32[: n * 3 * w * w].view(n, 3, w, w)
            x.copy_(u8.permute(0, 3, 1, 2)).mul_(1 / 255)  # (n, 3, w, w)
            # affine map: output coords in [-1, 1] -> frame px -> window coords in [-1, 1]
            a, bias = 2 / (px * w), -2 * (origin / px + lo) / w - 1
            s = half[sel] * a
            theta = torch.stack([
                torch.stack([s * cos[sel] * mirror[sel], -s * sin[sel], a * cx[sel] + bias], -1),
                torch.stack([s * sin[sel] * mirror[sel], s * cos[sel], a * cy[sel] + bias], -1)], 1)
            grid = F.affine_grid(theta, (n, 3, m, m), align_corners=False)  # (n, m, m, 2)
            fine[sel] = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return F.avg_pool2d(fine, self.ss) if self.ss > 1 else fine  # (b, 3, 64, 64)
