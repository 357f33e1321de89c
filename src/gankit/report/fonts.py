"""Fonts for the text the report draws (run names in plot titles, class names in label grids), in one place.

DejaVu Sans (shipped with matplotlib: Latin, Greek, Cyrillic, Arabic, Hebrew, Georgian, Armenian) comes first, then
installed wide-coverage fonts (`FALLBACK_FAMILIES`, e.g. Noto Sans CJK, Yu Gothic, Hiragino Sans, Microsoft YaHei, Noto
Sans Thai / Devanagari / Tamil..., then any other installed family named like `FALLBACK_MARKERS`) found through
matplotlib's font manager. A character none of them has is written as a readable stand-in (its accents stripped,
else its code point, 'U+706B') rather than drawn as a box with a "Glyph missing" warning per glyph, and the first such
text gets one warning line saying what font to install.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from gankit.report import _mplconfig

_mplconfig.choose()  # before the functions below import matplotlib, which reads the folder chosen

#: Installed fonts tried, in this order, for CJK characters (DejaVu Sans has none): Linux's, then Windows' (Yu Gothic...
#: Malgun Gothic), then macOS' (PingFang... AppleGothic).
CJK_FAMILIES = (
    "Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK KR", "Noto Sans CJK",
    "Noto Sans JP", "Noto Sans SC", "Noto Sans TC", "Noto Sans KR",
    "Source Han Sans", "Source Han Sans JP", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
    "IPAexGothic", "IPAGothic", "TakaoPGothic", "VL PGothic", "NanumGothic", "Droid Sans Fallback",
    "Yu Gothic", "Meiryo", "MS Gothic", "Microsoft YaHei", "Microsoft JhengHei", "SimHei", "Malgun Gothic",
    "PingFang SC", "Hiragino Sans", "Hiragino Kaku Gothic Pro", "Hiragino Kaku Gothic ProN", "Hiragino Sans GB",
    "Apple SD Gothic Neo", "AppleGothic",
)
#: Scripts (as the first word of their characters' Unicode names says them: 'THAI CHARACTER KO KAI') that each have a
#: Noto font named "Noto Sans <Script>" (on Debian/Ubuntu in fonts-noto-core).
NOTO_SCRIPTS = (
    "Thai", "Lao", "Khmer", "Myanmar", "Arabic", "Hebrew", "Syriac", "Thaana", "Devanagari", "Bengali", "Gurmukhi",
    "Gujarati", "Oriya", "Tamil", "Telugu", "Kannada", "Malayalam", "Sinhala", "Georgian", "Armenian", "Ethiopic",
    "Cherokee", "Tifinagh", "Mongolian",
)
#: Then these, for the scripts of other languages: the Noto fonts, then Windows' (Segoe UI: Arabic, Hebrew, Georgian,
#: Armenian; Nirmala UI: Indian scripts; Leelawadee UI: Thai, Lao; Ebrima: Ethiopic).
SCRIPT_FAMILIES = tuple(f"Noto Sans {script}" for script in NOTO_SCRIPTS) + (
    "Noto Naskh Arabic", "Segoe UI", "Nirmala UI", "Leelawadee UI", "Ebrima",
)
#: Then these, for other characters DejaVu Sans lacks (symbols mostly).
OTHER_FAMILIES = ("Arial Unicode MS", "Noto Sans", "Noto Sans Symbols", "Noto Sans Symbols 2")
FALLBACK_FAMILIES = CJK_FAMILIES + SCRIPT_FAMILIES + OTHER_FAMILIES
#: Other installed families tried after `FALLBACK_FAMILIES` (by name) when their name holds one of these.
FALLBACK_MARKERS = ("CJK", "Source Han Sans", "Hiragino", "WenQuanYi")
PRIMARY_FAMILY = "DejaVu Sans"


@dataclass(frozen=True)
class Font:
    family: str
    path: str
    index: int
    chars: frozenset

    def has(self, ch: str) -> bool:
        return ord(ch) in self.chars or ch in "\n\t"


def _load(family: str, path, index: int = 0) -> Font | None:
    from matplotlib.ft2font import FT2Font

    try:
        return Font(family, str(path), index, frozenset(FT2Font(str(path), face_index=index).get_charmap()))
    except (OSError, RuntimeError, ValueError, TypeError):  # unreadable or not a font FreeType knows
        return None


@functools.lru_cache(maxsize=None)
def fonts() -> tuple[Font, ...]:
    """DejaVu Sans, then the installed `FALLBACK_FAMILIES` and families named like `FALLBACK_MARKERS` (regular face),
    each with the characters it has."""
    import matplotlib
    from matplotlib import font_manager

    found = [_load(PRIMARY_FAMILY, Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")]
    entries = {}
    for entry in font_manager.fontManager.ttflist:
        wanted = entry.name in FALLBACK_FAMILIES or any(m in entry.name for m in FALLBACK_MARKERS)
        if wanted and entry.style == "normal":
            weight = entry.weight if isinstance(entry.weight, int) else 400
            if entry.name not in entries or abs(weight - 400) < entries[entry.name][0]:
                entries[entry.name] = (abs(weight - 400), entry)
    for family in [f for f in FALLBACK_FAMILIES if f in entries] + sorted(set(entries) - set(FALLBACK_FAMILIES)):
        entry = entries[family][1]
        found.append(_load(family, entry.fname, getattr(entry, "index", 0) or 0))
    return tuple(f for f in found if f is not None)


@functools.lru_cache(maxsize=4096)
def font_for(ch: str) -> Font | None:
    """The first font of `fonts()` that has `ch`, or None."""
    return next((f for f in fonts() if f.has(ch)), None)


def stand_in(ch: str, drawable=None) -> str:
    """What to write for `ch`, which no font has: its letters without accents ('É' -> 'E') when those can be
    drawn, '' for a lone combining mark, else its code point ('火' -> 'U+706B')."""
    drawable = drawable or (lambda c: font_for(c) is not None)
    if unicodedata.combining(ch):
        return ""
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    if base and base != ch and all(drawable(c) for c in base):
        return base
    return f"U+{ord(ch):04X}"


def displayable(text: str, font: Font | None = None) -> str:
    """`text` with every character that `font` (default: every font of `fonts()`, and then the first such text is
    `tell_missing`) cannot draw replaced by its `stand_in`; a code point is set apart by a space from another and from
    a letter or digit ('日本' -> 'U+65E5 U+672C', 'ポン64' -> 'U+30DD U+30F3 64', not 'U+30F364')."""
    drawable = font.has if font is not None else (lambda c: font_for(c) is not None)
    out, last_code, last_alnum, missing = [], False, False, []
    for ch in text:
        if drawable(ch):
            out.append((" " if last_code and ch.isalnum() else "") + ch)
            last_code, last_alnum = False, ch.isalnum()
            continue
        missing.append(ch)
        sub = stand_in(ch, drawable)
        code = sub.startswith("U+")
        out.append((" " if code and (last_code or last_alnum) else "") + sub)
        last_code, last_alnum = code, bool(sub) and sub[-1].isalnum()
    if missing and font is None:
        tell_missing(text, missing)
    return "".join(out)


_told = []  # the text `tell_missing` has warned about: one warning a process


def tell_missing(text: str, missing: list[str]) -> None:
    """Warn, once a process, that no installed font draws `missing` (characters of `text`) and what to install; the
    figures keep their stand-ins. matplotlib would have warned 'Glyph ... missing from font(s)' once per character."""
    if _told:
        return
    _told.append(text)
    from matplotlib import get_cachedir

    from gankit.console import warn

    fonts_for = []
    if any(unicodedata.east_asian_width(ch) in "WF" for ch in missing):
        fonts_for.append("a CJK font (Debian/Ubuntu: sudo apt install fonts-noto-cjk; Fedora: sudo dnf install "
                         "google-noto-sans-cjk-fonts)")
    scripts = list(dict.fromkeys(s for s in map(_noto_script, missing) if s))
    if scripts:
        fonts_for.append(f"{', '.join(f'Noto Sans {s}' for s in scripts)} (Debian/Ubuntu: sudo apt install "
                         "fonts-noto-core)")
    font = " and ".join(fonts_for) or f"a font that has them ({', '.join(OTHER_FAMILIES)})"
    chars = "".join(dict.fromkeys(missing))
    what = repr(text) if set(chars) == set(text) else f"{chars!r} in {text!r}"
    warn(f"no installed font can draw {what}: figures write stand-ins ({missing[0]!r} -> {stand_in(missing[0])!r}). "
         f"To draw them, install {font}, then delete matplotlib's font cache {Path(get_cachedir()) / 'fontlist-*.json'}")


def _noto_script(ch: str) -> str | None:
    """The script of `ch` among NOTO_SCRIPTS ('ท' -> 'Thai'), or None."""
    script = unicodedata.name(ch, "").split(" ")[0].split("-")[0].title()  # 'ARABIC-INDIC DIGIT ONE' -> 'Arabic'
    return script if script in NOTO_SCRIPTS else None


def mpl_families(text: str = "") -> list[str]:
    """matplotlib `fontfamily` for `text`: DejaVu Sans, then (when `text` needs them) the installed fallbacks, in
    which matplotlib (>= 3.6) looks for each glyph the first one lacks."""
    primary = fonts()[0]
    if all(primary.has(ch) for ch in text):
        return [primary.family]
    return [f.family for f in fonts()]


def fit_figure_text(fig) -> None:
    """Make every text of `fig` drawable: stand-ins for characters no font has, fallback fonts for the rest.

    Called before saving, so texts set by any caller (compare's legends) get the same treatment as plots' titles.
    """
    primary = fonts()[0]
    for text in _texts(fig):
        s = text.get_text()
        if not s or all(primary.has(ch) for ch in s):
            continue
        s = displayable(s)
        text.set_text(s)
        families = mpl_families(s)
        if len(families) > 1:
            text.set_fontfamily(families)


def _texts(fig) -> list:
    """The figure's texts that a caller can set: titles, axis labels, legends, free texts. Not tick labels (numbers
    here; `fig.findobj` would reach them, but walking every tick took 13-65 ms a figure, more than drawing some)."""
    texts = list(fig.texts) + [t for t in (getattr(fig, "_suptitle", None), getattr(fig, "_supxlabel", None),
                                           getattr(fig, "_supylabel", None)) if t is not None]
    legends = list(fig.legends)
    for ax in fig.axes:
        texts += [ax.title, getattr(ax, "_left_title", None), getattr(ax, "_right_title", None),
                  ax.xaxis.label, ax.yaxis.label, *ax.texts]
        legends.append(ax.get_legend())
    for legend in legends:
        if legend is not None:
            texts += [legend.get_title(), *legend.get_texts()]
    return [t for t in texts if t is not None]


def pil_font(text: str, size: int):
    """(Pillow TrueType font, text to draw) for `text` at `size` px: the first font that has every character, else the
    one that has most, with stand-ins for the characters it lacks (Pillow draws a box for a missing glyph)."""
    from PIL import ImageFont

    text = displayable(text)
    candidates = fonts()
    best = max(candidates, key=lambda f: (sum(f.has(ch) for ch in text), -candidates.index(f)))
    return ImageFont.truetype(best.path, size, index=best.index), displayable(text, best)
