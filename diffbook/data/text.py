"""Words rendered into small images: the data of the spelling experiment (chapter "Why text-to-image models cannot
spell").

A word of up to four characters is drawn in DejaVu Sans Mono (the monospaced font that ships with matplotlib, so
no download is needed) with Pillow, light text on the dark background -1, the book's convention for images in
[-1, 1]. The font is monospaced and every word starts at the same place, so character k always sits in the same
column band ("slot" k, :func:`slot_bounds`); a 3-letter word leaves the last slot empty. Rendering is deterministic
(no randomness, no system fonts), and a character the font has no glyph for is an error, not a silent box.
"""

from __future__ import annotations

import functools
import os

import torch

__all__ = ["HEIGHT", "WIDTH", "MAX_LEN", "FONT_SIZE", "ALPHABET", "font_path", "check_word", "render_word",
           "render_words", "slot_bounds", "random_strings"]

HEIGHT, WIDTH = 16, 48  # image size [H, W]
MAX_LEN = 4  # characters per image
FONT_SIZE = 14  # pixels per em: the advance of one character is 8.42 px
LEFT, TOP = 7, -1  # where the first character's cell starts (4 characters are centred in the width)
#: The characters of the experiment's words (the renderer itself takes any character the font has).
ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def font_path() -> str:
    """The path of matplotlib's DejaVu Sans Mono (``mpl-data/fonts/ttf/DejaVuSansMono.ttf``)."""
    import matplotlib

    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSansMono.ttf")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"matplotlib's DejaVu Sans Mono is missing ({path}); reinstall matplotlib.")
    return path


@functools.lru_cache(maxsize=None)
def _font():
    from matplotlib import ft2font
    from PIL import ImageFont

    return ImageFont.truetype(font_path(), FONT_SIZE), ft2font.FT2Font(font_path())


def check_word(word) -> str:
    """Return ``word`` if it can be rendered: a non-empty string of at most :data:`MAX_LEN` printable characters
    that the font has glyphs for; otherwise one clear error naming the problem."""
    if not isinstance(word, str):
        raise TypeError(f"a word must be a string, got {type(word).__name__}.")
    if not word or len(word) > MAX_LEN:
        raise ValueError(f"a word must have 1 to {MAX_LEN} characters (the image is {HEIGHT}x{WIDTH} pixels), "
                         f"got {word!r} ({len(word)} characters).")
    _, face = _font()
    missing = [c for c in word if not c.isprintable() or c.isspace() or face.get_char_index(ord(c)) == 0]
    if missing:
        names = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in missing)
        raise ValueError(f"DejaVu Sans Mono has no glyph for {names} in {word!r}; use letters, digits or "
                         "punctuation it covers (Latin, Greek, Cyrillic).")
    return word


def render_word(word: str) -> torch.Tensor:
    """Render one word as an image [1, HEIGHT, WIDTH] in [-1, 1]: text +1, background -1. Deterministic."""
    from PIL import Image, ImageDraw

    check_word(word)
    font, _ = _font()
    img = Image.new("L", (WIDTH, HEIGHT), 0)
    ImageDraw.Draw(img).text((LEFT, TOP), word, fill=255, font=font)
    pixels = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).float()
    return (pixels.view(1, HEIGHT, WIDTH) / 127.5 - 1).clamp(-1, 1)


def render_words(words) -> torch.Tensor:
    """Render a list of words as a batch [N, 1, HEIGHT, WIDTH] in [-1, 1]."""
    if isinstance(words, str):
        raise TypeError("render_words takes a list of words; for one word use render_word(word).")
    words = list(words)
    if not words:
        raise ValueError("render_words needs at least one word.")
    return torch.stack([render_word(w) for w in words])


def slot_bounds() -> list[tuple[int, int]]:
    """The column range [start, stop) of each character slot (the pixels whose centre lies in its cell)."""
    font, _ = _font()
    advance = font.getlength("m")
    return [(int(round(LEFT + k * advance)), int(round(LEFT + (k + 1) * advance))) for k in range(MAX_LEN)]


def random_strings(n: int, generator: torch.Generator, lengths=(3, 4), alphabet: str = ALPHABET) -> list[str]:
    """n random strings of the given lengths over ``alphabet`` (uniform letters), drawn from ``generator``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}.")
    lens = torch.tensor(list(lengths))[torch.randint(len(lengths), (n,), generator=generator)]
    letters = torch.randint(len(alphabet), (n, max(lengths)), generator=generator)
    return ["".join(alphabet[i] for i in row[:k]) for row, k in zip(letters.tolist(), lens.tolist())]
