"""The pictures the default model learns from: one flat shape on a flat background, with its
caption, drawn from a seeded generator (numpy only: the trainer and the tests draw the same).

    "a red circle on a blue background"
    "a yellow square in the top left"
    "a green triangle in the bottom right on a white background"

Each picture has a background color, a shape (circle, square, triangle), its color (never the
background's), a position on a 3x3 grid (with a little jitter) and a size; the caption names
the shape and its color always, the position most of the time (85 %) and the background half
of the time, so that a prompt may leave either out. `COLORS` is also what the tests measure a generated image
against (dominant colors, the object's centroid).
"""

from __future__ import annotations

import numpy as np

COLORS = {   # name -> RGB, far apart from each other
    "red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 60, 220),
    "yellow": (240, 220, 30), "white": (245, 245, 245), "black": (15, 15, 15),
    "orange": (245, 140, 20), "purple": (140, 40, 180),
}
SHAPES = ("circle", "square", "triangle")
# (name, (x, y) of the center as a fraction of the side)
POSITIONS = {
    "top left": (0.25, 0.25), "top": (0.5, 0.25), "top right": (0.75, 0.25),
    "left": (0.25, 0.5), "center": (0.5, 0.5), "right": (0.75, 0.5),
    "bottom left": (0.25, 0.75), "bottom": (0.5, 0.75), "bottom right": (0.75, 0.75),
}


def caption(shape: str, color: str, position: str | None, background: str | None) -> str:
    article = "an" if color[0] in "aeiou" else "a"
    words = f"{article} {color} {shape}"
    if position is not None:
        words += " in the center" if position == "center" else f" in the {position}"
    if background is not None:
        article = "an" if background[0] in "aeiou" else "a"
        words += f" on {article} {background} background"
    return words


def draw(p: dict, size: int, xp=np):
    """The pictures of the parameters `p` (sample()'s, each an array over the batch): (B, size,
    size, 3) floats in 0..255, antialiased by 4x4 supersampling. `xp` is numpy, or torch to
    draw on the GPU (the trainer): the same arithmetic either way."""
    s = 4
    like = p["cx"]                                 # the batch's dtype and (torch) device
    on = {} if xp is np else {"device": like.device}
    ticks = (xp.arange(size * s, dtype=like.dtype, **on) + 0.5) / (size * s)
    x, y = ticks[None, None, :], ticks[None, :, None]
    cx, cy, r, kind = (p[k][:, None, None] for k in ("cx", "cy", "radius", "shape"))
    circle = (x - cx) ** 2 + (y - cy) ** 2 <= r ** 2
    square = (abs(x - cx) <= r * 0.85) & (abs(y - cy) <= r * 0.85)
    top, bottom = cy - r, cy + r * 0.8             # an upright triangle in the radius' box
    triangle = (y >= top) & (y <= bottom) & (abs(x - cx) <= (y - top) / (bottom - top) * r)
    inside = xp.where(kind == 0, circle, xp.where(kind == 1, square, triangle))
    cover = (inside * 1.0).reshape(-1, size, s, size, s).mean(4).mean(2)[..., None]
    return (1 - cover) * p["background_rgb"][:, None, None] + cover * p["color_rgb"][:, None, None]


def sample(rng: np.random.Generator, count: int) -> tuple[dict, list[str]]:
    """`count` pictures' parameters (numpy arrays: shape index, colors, center, radius) and
    captions."""
    names, places = list(COLORS), list(POSITIONS)
    background = rng.integers(len(names), size=count)
    color = (background + rng.integers(1, len(names), size=count)) % len(names)   # not the bg
    shape = rng.integers(len(SHAPES), size=count)
    position = rng.integers(len(places), size=count)
    jitter = rng.uniform(-0.05, 0.05, size=(count, 2))
    say_position, say_background = rng.random(count) < 0.85, rng.random(count) < 0.5
    rgb = np.array(list(COLORS.values()), np.float64)
    grid = np.array([POSITIONS[p] for p in places])
    params = {"shape": shape, "color_rgb": rgb[color], "background_rgb": rgb[background],
              "cx": grid[position, 0] + jitter[:, 0], "cy": grid[position, 1] + jitter[:, 1],
              "radius": rng.uniform(0.17, 0.24, size=count)}
    texts = [caption(SHAPES[shape[i]], names[color[i]],
                     places[position[i]] if say_position[i] else None,
                     names[background[i]] if say_background[i] else None) for i in range(count)]
    return params, texts


def batch(seed: int, count: int, size: int):
    """`count` samples of one seed: (count, size, size, 3) uint8 images and their captions."""
    params, texts = sample(np.random.default_rng(seed), count)
    return np.round(draw(params, size)).astype(np.uint8), texts


def measure(pixels: np.ndarray) -> dict:
    """What an (H, W, 3) uint8 image shows: the background's color (the nearest named color to
    the border's median), the object's color (the nearest named color to the median of the
    pixels far from the background) and the object's centroid as fractions of the width and
    height, and how much of the image it covers."""
    img = pixels.astype(np.float64)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    bg = np.median(border, axis=0)
    far = np.linalg.norm(img - bg, axis=-1) > 80
    nearest = lambda rgb: min(COLORS, key=lambda n: np.linalg.norm(np.array(COLORS[n]) - rgb))
    out = {"background": nearest(bg), "coverage": float(far.mean())}
    if far.any():
        ys, xs = np.nonzero(far)
        out.update(color=nearest(np.median(img[far], axis=0)),
                   centroid=(float(xs.mean() + 0.5) / img.shape[1],
                             float(ys.mean() + 0.5) / img.shape[0]))
    return out
