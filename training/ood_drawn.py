"""Non-dermoscopy images drawn by a program, for the gate's non-lesion set (training/ood_images.py).

Each function draws one image from a random generator, at a phone photo's 4:3 size, so that every
image is reproducible from its seed. The drawings are crude next to real photos; what they give the
gate is breadth: documents, app screenshots, charts, outdoor and indoor scenes, shaded objects on a
table, flat cards, gradients, noise and patterns, in colours and layouts no sample photo covers.
"""
from __future__ import annotations

import functools
import io
from collections.abc import Callable
from pathlib import Path

import matplotlib
import matplotlib.style
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from skimage.data import binary_blobs

PHOTO_SIZE = (640, 480)
# Fitzpatrick-like skin tones and a few card colours (RGB).
FLAT_COLOURS = [(255, 224, 196), (241, 194, 167), (224, 172, 138), (198, 134, 99), (141, 85, 54),
                (92, 56, 36), (230, 200, 180), (200, 160, 150), (128, 128, 128), (40, 90, 160),
                (30, 140, 60), (200, 40, 40)]
WORDS = ("patient referral letter dermatology clinic appointment lesion photo date name the of and "
         "to in is for with please bring your card insurance number follow up results report total "
         "invoice amount due order delivery address phone email account settings profile save "
         "cancel search home news weather today meeting notes project budget summary").split()
# matplotlib's own fonts: pinned with it, so every machine draws the same pages.
FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf",
         "cmr10.ttf", "STIXGeneral.ttf")
CHART_STYLES = ("default", "dark_background", "ggplot", "bmh", "grayscale", "fivethirtyeight")

Rng = np.random.Generator


def font(rng: Rng, size: int) -> ImageFont.FreeTypeFont:
    return _font(str(rng.choice(FONTS)), size)


@functools.cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_DIR / name), size)


def colour(rng: Rng, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(value) for value in rng.integers(low, high, 3))


def words(rng: Rng, count: int) -> str:
    return " ".join(rng.choice(WORDS, count))


def camera(image: Image.Image, rng: Rng, noise: float = 3.0) -> Image.Image:
    """A drawing made to look photographed: slight blur, sensor noise, a JPEG round trip."""
    image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0, 1.2))))
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, noise, (image.height, image.width, 3))
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(60, 95)))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def vertical_gradient(size: tuple[int, int], top: tuple, bottom: tuple) -> np.ndarray:
    width, height = size
    t = np.linspace(0, 1, height)[:, None, None]
    return np.broadcast_to(np.array(top) * (1 - t) + np.array(bottom) * t, (height, width, 3)).copy()


def document(rng: Rng) -> Image.Image:
    """A page: a heading, paragraphs, sometimes a table or form boxes; flat like a scan, or
    photographed on a desk, turned a little and lit unevenly."""
    width, height = PHOTO_SIZE
    portrait = rng.random() < 0.5
    page_size = (height, width) if portrait else (width, height)
    paper = colour(rng, 225, 256)
    ink = colour(rng, 0, 70)
    page = Image.new("RGB", page_size, paper)
    draw = ImageDraw.Draw(page)
    margin, y = int(rng.integers(15, 50)), int(rng.integers(10, 40))
    draw.text((margin, y), words(rng, 3).title(), fill=ink, font=font(rng, int(rng.integers(22, 40))))
    y += 55
    size = int(rng.integers(10, 20))
    body = font(rng, size)
    while y < page_size[1] - 30:
        block = rng.random()
        if block < 0.15:  # a table
            rows, cols = int(rng.integers(3, 7)), int(rng.integers(2, 5))
            cell_w, cell_h = (page_size[0] - 2 * margin) // cols, size * 2
            for r in range(rows):
                for c in range(cols):
                    box = (margin + c * cell_w, y + r * cell_h,
                           margin + (c + 1) * cell_w, y + (r + 1) * cell_h)
                    draw.rectangle(box, outline=ink)
                    draw.text((box[0] + 4, box[1] + 3), words(rng, 1), fill=ink, font=body)
            y += rows * cell_h + size
        elif block < 0.3:  # form fields
            draw.text((margin, y), words(rng, 2) + ":", fill=ink, font=body)
            draw.rectangle((margin + 120, y - 2, page_size[0] - margin, y + size + 4), outline=ink)
            y += int(size * 2.2)
        else:  # a paragraph
            for _ in range(int(rng.integers(2, 6))):
                draw.text((margin, y), words(rng, int(rng.integers(6, 12))), fill=ink, font=body)
                y += int(size * 1.5)
            y += size
    if rng.random() < 0.5:
        return camera(page, rng, noise=2.0)
    desk = Image.new("RGB", PHOTO_SIZE, colour(rng, 40, 200))
    page = page.rotate(float(rng.uniform(-12, 12)), expand=True, fillcolor=desk.getpixel((0, 0)))
    scale = rng.uniform(0.7, 1.1) * min(width / page.width, height / page.height)
    page = page.resize((max(1, int(page.width * scale)), max(1, int(page.height * scale))))
    desk.paste(page, ((width - page.width) // 2, (height - page.height) // 2))
    light = vertical_gradient(PHOTO_SIZE, (1.0,) * 3, (rng.uniform(0.6, 1.0),) * 3)
    lit = Image.fromarray((np.asarray(desk) * light).clip(0, 255).astype(np.uint8))
    return camera(lit, rng)


def screenshot(rng: Rng) -> Image.Image:
    """An app's screen, light or dark, desktop or phone: bars, a sidebar, text, buttons, fields and
    picture placeholders."""
    dark = rng.random() < 0.35
    background, fore = ((30, 32, 38), (220, 220, 225)) if dark else ((250, 250, 252), (30, 30, 40))
    accent = colour(rng, 30, 230)
    phone = rng.random() < 0.4
    size = (270, 480) if phone else PHOTO_SIZE
    shot = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(shot)
    bar = int(rng.integers(24, 48))
    draw.rectangle((0, 0, size[0], bar), fill=accent)
    draw.text((10, bar // 4), words(rng, 2).title(), fill=(255, 255, 255), font=font(rng, bar // 2))
    left = 0
    if not phone and rng.random() < 0.6:
        left = int(rng.integers(100, 180))
        draw.rectangle((0, bar, left, size[1]), fill=tuple(int(v * 0.9) for v in background))
        for item in range(int(rng.integers(4, 10))):
            draw.text((12, bar + 14 + item * 28), words(rng, 1), fill=fore, font=font(rng, 14))
    y, body = bar + 14, font(rng, int(rng.integers(11, 16)))
    while y < size[1] - 40:
        kind = rng.random()
        x0, x1 = left + 14, size[0] - 14
        if kind < 0.2:  # a picture or a chart placeholder
            h = int(rng.integers(50, 140))
            tile = vertical_gradient((x1 - x0, h), colour(rng), colour(rng)).astype(np.uint8)
            shot.paste(Image.fromarray(tile), (x0, y))
            y += h + 12
        elif kind < 0.4:  # buttons
            x = x0
            for _ in range(int(rng.integers(1, 4))):
                w = int(rng.integers(60, 120))
                draw.rounded_rectangle((x, y, x + w, y + 30), radius=8, fill=accent)
                draw.text((x + 10, y + 8), words(rng, 1), fill=(255, 255, 255), font=body)
                x += w + 10
            y += 44
        elif kind < 0.55:  # an input field
            draw.rounded_rectangle((x0, y, x1, y + 30), radius=4, outline=fore)
            draw.text((x0 + 8, y + 8), words(rng, 2), fill=fore, font=body)
            y += 44
        else:
            draw.text((x0, y), words(rng, int(rng.integers(3, 9))), fill=fore, font=body)
            y += 22
    return shot if rng.random() < 0.7 else camera(shot, rng)


def chart(rng: Rng) -> Image.Image:
    """A matplotlib chart of random data in one of its styles: lines, bars, scatter, pie,
    histogram or heatmap."""
    style = str(rng.choice(CHART_STYLES))
    with matplotlib.style.context(style):
        figure = Figure(figsize=(6.4, 4.8), dpi=100)
        axes = figure.add_subplot()
        kind = int(rng.integers(0, 6))
        if kind == 0:
            for _ in range(int(rng.integers(1, 4))):
                axes.plot(np.cumsum(rng.normal(size=100)))
        elif kind == 1:
            bars = int(rng.integers(3, 12))
            axes.bar(range(bars), rng.uniform(1, 10, bars))
        elif kind == 2:
            axes.scatter(rng.normal(size=200), rng.normal(size=200), c=rng.uniform(size=200), s=12)
        elif kind == 3:
            axes.pie(rng.uniform(1, 5, int(rng.integers(3, 7))))
        elif kind == 4:
            axes.hist(rng.normal(size=1000), bins=int(rng.integers(10, 40)))
        else:
            axes.imshow(rng.normal(size=(20, 30)).cumsum(0),
                        cmap=str(rng.choice(["viridis", "magma", "coolwarm"])))
        axes.set_title(words(rng, 3))
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())


def landscape(rng: Rng) -> Image.Image:
    """Sky, sun, clouds, mountain ridges fading with distance, ground or water, trees and houses."""
    width, height = PHOTO_SIZE
    horizon = int(height * rng.uniform(0.35, 0.7))
    sunset = rng.random() < 0.3
    sky_top = (255, 140, 60) if sunset else colour(rng, 40, 140)
    pixels = vertical_gradient(PHOTO_SIZE, sky_top, (255, 220, 180) if sunset else (200, 225, 245))
    scene = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(scene)
    sun_x, sun_y = int(rng.integers(0, width)), int(rng.integers(20, horizon))
    sun_r = int(rng.integers(12, 40))
    draw.ellipse((sun_x - sun_r, sun_y - sun_r, sun_x + sun_r, sun_y + sun_r), fill=(255, 245, 200))
    for _ in range(int(rng.integers(0, 6))):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, horizon))
        draw.ellipse((x, y, x + int(rng.integers(60, 200)), y + int(rng.integers(20, 50))),
                     fill=(245, 245, 250))
    base = np.array(colour(rng, 30, 150))
    for layer in range(int(rng.integers(1, 4))):
        haze = 0.5 ** layer
        ridge = horizon - int(rng.uniform(0.05, 0.3) * height * haze)
        heights = ridge + np.cumsum(rng.normal(0, 6, 33))
        points = [(int(x), int(h)) for x, h in zip(np.linspace(0, width, 33), heights)]
        shade = tuple(int(v) for v in base * haze + np.array(pixels[horizon, 0]) * (1 - haze))
        draw.polygon([(0, horizon), *points, (width, horizon)], fill=shade)
    ground_top, ground_bottom = ((40, 90, 160), (20, 50, 110)) if rng.random() < 0.3 else \
        (colour(rng, 60, 180), colour(rng, 20, 120))
    scene.paste(Image.fromarray(vertical_gradient((width, height - horizon), ground_top,
                                                  ground_bottom).astype(np.uint8)), (0, horizon))
    for _ in range(int(rng.integers(0, 12))):
        x, y = int(rng.integers(0, width)), int(rng.integers(horizon, height))
        size = int(10 + 60 * (y - horizon) / (height - horizon))
        if rng.random() < 0.7:
            draw.rectangle((x - size // 10, y - size, x + size // 10, y), fill=(90, 60, 30))
            draw.ellipse((x - size // 2, y - 2 * size, x + size // 2, y - size // 2),
                         fill=colour(rng, 10, 120))
        else:
            draw.rectangle((x - size, y - size, x + size, y), fill=colour(rng, 120, 250))
            draw.polygon([(x - size - 5, y - size), (x, y - 2 * size), (x + size + 5, y - size)],
                         fill=colour(rng, 60, 160))
    return camera(scene, rng)


def room(rng: Rng) -> Image.Image:
    """An indoor scene in perspective: walls, floor, a window, a table, a picture, a lamp."""
    width, height = PHOTO_SIZE
    scene = Image.new("RGB", PHOTO_SIZE, colour(rng, 120, 240))
    draw = ImageDraw.Draw(scene)
    back = (int(width * rng.uniform(0.2, 0.35)), int(height * rng.uniform(0.15, 0.3)),
            int(width * rng.uniform(0.65, 0.8)), int(height * rng.uniform(0.6, 0.75)))
    wall = colour(rng, 140, 250)
    draw.polygon([(0, 0), back[:2], (back[0], back[3]), (0, height)], fill=tuple(int(v * 0.8) for v in wall))
    draw.polygon([(width, 0), (back[2], back[1]), back[2:], (width, height)],
                 fill=tuple(int(v * 0.7) for v in wall))
    draw.rectangle(back, fill=wall)
    draw.polygon([(0, height), (back[0], back[3]), back[2:], (width, height)], fill=colour(rng, 60, 180))
    window_w = (back[2] - back[0]) // 3
    wx = back[0] + int(rng.integers(5, 2 * window_w))
    draw.rectangle((wx, back[1] + 15, wx + window_w, back[1] + 15 + window_w), fill=(170, 210, 245),
                   outline=(250, 250, 250), width=4)
    table_y = int(height * rng.uniform(0.7, 0.85))
    table = colour(rng, 60, 160)
    draw.rectangle((width // 4, table_y, 3 * width // 4, table_y + 15), fill=table)
    for x in (width // 4 + 10, 3 * width // 4 - 20):
        draw.rectangle((x, table_y + 15, x + 10, height), fill=table)
    px = back[0] + 2 * window_w + 10
    draw.rectangle((px, back[1] + 30, px + window_w // 2, back[1] + 30 + window_w // 2), fill=colour(rng),
                   outline=(40, 30, 20), width=3)
    lx = int(rng.integers(width // 4, 3 * width // 4))
    draw.ellipse((lx - 20, table_y - 60, lx + 20, table_y - 20), fill=(255, 240, 190))
    draw.rectangle((lx - 3, table_y - 20, lx + 3, table_y), fill=(50, 50, 50))
    return camera(scene, rng)


def street(rng: Rng) -> Image.Image:
    """Buildings with rows of windows along a road under the sky."""
    width, height = PHOTO_SIZE
    pixels = vertical_gradient(PHOTO_SIZE, colour(rng, 60, 160), (215, 225, 235))
    scene = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(scene)
    ground = int(height * rng.uniform(0.65, 0.8))
    x = int(-rng.integers(0, 40))
    while x < width:
        w, h = int(rng.integers(50, 140)), int(rng.integers(100, ground - 10))
        face = colour(rng, 70, 220)
        draw.rectangle((x, ground - h, x + w, ground), fill=face)
        glass = colour(rng, 20, 120)
        for wy in range(ground - h + 10, ground - 20, 22):
            for wx in range(x + 8, x + w - 12, 18):
                draw.rectangle((wx, wy, wx + 10, wy + 12), fill=glass)
        x += w + int(rng.integers(0, 15))
    draw.rectangle((0, ground, width, height), fill=(70, 70, 75))
    for lane in range(0, width, 80):
        middle = (ground + height) // 2
        draw.rectangle((lane, middle, lane + 40, middle + 5), fill=(240, 240, 240))
    return camera(scene, rng)


def scene(rng: Rng) -> Image.Image:
    """An outdoor landscape, a room or a street."""
    return [landscape, room, street][int(rng.integers(0, 3))](rng)


def shaded_objects(rng: Rng) -> Image.Image:
    """One to four objects on a table against a wall, lit from one side: balls, cans and boxes,
    shaded by their surface's angle to the light, each over its soft shadow."""
    width, height = PHOTO_SIZE
    horizon = int(height * rng.uniform(0.35, 0.6))
    pixels = np.concatenate([vertical_gradient((width, horizon), colour(rng, 100, 240), colour(rng, 80, 220)),
                             vertical_gradient((width, height - horizon), colour(rng, 60, 200),
                                               colour(rng, 30, 160))])
    light = np.array([rng.uniform(-0.8, 0.8), -rng.uniform(0.2, 0.8), 1.0])
    light /= np.linalg.norm(light)
    halfway = (light + [0, 0, 1]) / np.linalg.norm(light + [0, 0, 1])
    for _ in range(int(rng.integers(1, 5))):
        cx, base = rng.uniform(0.15, 0.85) * width, rng.uniform(horizon + 20, height - 10)
        size = rng.uniform(30, 120)
        tint = np.array(colour(rng, 20, 256), dtype=np.float32)
        # Shade only the object's neighbourhood: a whole frame per object is needlessly slow.
        top, left = max(0, int(base - 2.3 * size)), max(0, int(cx - 2.5 * size))
        bottom, right = min(height, int(base + 0.3 * size) + 1), min(width, int(cx + 2.5 * size) + 1)
        ys, xs = np.mgrid[top:bottom, left:right].astype(np.float32)
        region = pixels[top:bottom, left:right]
        shadow = ((xs - cx - light[0] * size) / (1.3 * size)) ** 2 + ((ys - base) / (0.25 * size)) ** 2 < 1
        region[shadow] *= 0.6
        shape = int(rng.integers(0, 3))
        if shape == 0:  # a ball resting on the table
            dx, dy = (xs - cx) / size, (ys - base + size) / size
            inside = dx ** 2 + dy ** 2 < 1
            normal = np.stack([dx, dy, np.sqrt(np.clip(1 - dx ** 2 - dy ** 2, 0, 1))], -1)
        elif shape == 1:  # an upright can: curved across, flat along its height
            dx = (xs - cx) / (size * 0.6)
            inside = (np.abs(dx) < 1) & (ys > base - 2.2 * size) & (ys < base)
            normal = np.stack([dx, np.zeros_like(dx), np.sqrt(np.clip(1 - dx ** 2, 0, 1))], -1)
        else:  # a box: its front face and one side
            inside = (np.abs(xs - cx) < size) & (ys > base - 1.5 * size) & (ys < base)
            side = xs > cx + 0.6 * size
            normal = np.where(side[..., None], np.array([0.8, 0.0, 0.6]), np.array([0.0, 0.0, 1.0]))
        lambert = np.clip(normal @ light, 0, 1)
        specular = np.clip(normal @ halfway, 0, 1) ** 40
        lit = tint * (0.25 + 0.75 * lambert[..., None]) + 255 * specular[..., None] * rng.uniform(0, 0.8)
        region[inside] = lit[inside]
    return camera(Image.fromarray(pixels.clip(0, 255).astype(np.uint8)), rng)


def flat_card(rng: Rng, index: int) -> Image.Image:
    """A plain card with a phone's sensor noise: the skin tones and card colours in turn, then
    random colours."""
    tone = FLAT_COLOURS[index] if index < len(FLAT_COLOURS) else colour(rng)
    pixels = np.full((*PHOTO_SIZE[::-1], 3), tone, dtype=np.float32)
    pixels += rng.normal(0, 3, pixels.shape)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def gradient(rng: Rng) -> Image.Image:
    """A linear gradient at any angle, or a radial one, between two random colours."""
    width, height = PHOTO_SIZE
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    if rng.random() < 0.5:
        angle = rng.uniform(0, np.pi)
        t = x * np.cos(angle) + y * np.sin(angle)
    else:
        t = np.hypot(x - rng.uniform(0, 1), y - rng.uniform(0, 1))
    t = (t - t.min()) / (t.max() - t.min())
    return Image.fromarray((start + (end - start) * t[..., None]).astype(np.uint8))


def noise(rng: Rng, index: int) -> Image.Image:
    """White noise, coloured noise blurred to blobs, or clouds (noise summed over octaves)."""
    width, height = PHOTO_SIZE
    kind = index % 3
    if kind == 0:
        return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    if kind == 1:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        return image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(2, 12))))
    clouds = np.zeros((height, width, 3))
    for octave in range(1, 6):
        cells = rng.uniform(0, 1, (3 * octave, 4 * octave, 3))
        layer = Image.fromarray((cells * 255).astype(np.uint8)).resize(PHOTO_SIZE, Image.Resampling.BICUBIC)
        clouds += np.asarray(layer, dtype=np.float64) / 2 ** octave
    clouds = (clouds - clouds.min()) / (clouds.max() - clouds.min())
    return Image.fromarray((clouds * 255).astype(np.uint8))


def pattern(rng: Rng, index: int) -> Image.Image:
    """A checkerboard, stripes, a grid of dots, rings, or blobs, in two random colours."""
    width, height = PHOTO_SIZE
    ys, xs = np.mgrid[0:height, 0:width]
    period = rng.uniform(8, 80)
    kind = index % 5
    if kind == 0:
        mask = ((xs // period).astype(int) + (ys // period).astype(int)) % 2 == 0
    elif kind == 1:
        angle = rng.uniform(0, np.pi)
        mask = ((xs * np.cos(angle) + ys * np.sin(angle)) // period).astype(int) % 2 == 0
    elif kind == 2:
        mask = np.hypot(xs % period - period / 2, ys % period - period / 2) < period * rng.uniform(0.15, 0.45)
    elif kind == 3:
        rings = np.hypot(xs - rng.uniform(0, width), ys - rng.uniform(0, height)) // period
        mask = rings.astype(int) % 2 == 0
    else:
        blobs = binary_blobs(length=width, blob_size_fraction=rng.uniform(0.03, 0.2),
                             rng=int(rng.integers(0, 2**31)))
        mask = blobs[:height]
    pixels = np.where(mask[..., None], np.array(colour(rng)), np.array(colour(rng)))
    return Image.fromarray(pixels.astype(np.uint8))


# What each drawn kind is made of: one image from a generator and its index within the kind.
DRAWN: dict[str, Callable[[Rng, int], Image.Image]] = {
    "document": lambda rng, _: document(rng),
    "screenshot": lambda rng, _: screenshot(rng),
    "chart": lambda rng, _: chart(rng),
    "scene": lambda rng, _: scene(rng),
    "object": lambda rng, _: shaded_objects(rng),
    "flat": flat_card,
    "gradient": lambda rng, _: gradient(rng),
    "noise": noise,
    "pattern": pattern,
}
