"""Numbers, times and their units in an assistant reply, normalised for comparison.

Number words become digits first ("twenty-five percent" -> "25 percent", "a hundred" -> "100"),
spoken times become clock times ("half past seven pm" -> "19:30"), then every number is read
with the unit written after it. See docs/METRICS.md for the exact rules and what is left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine".split())}
TEENS = {w: i + 10 for i, w in enumerate(
    "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split())}
TENS = {w: (i + 2) * 10 for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SMALL = {**UNITS, **TEENS, **TENS}
_SCALES = {"hundred": 100, "thousand": 1000}
# A bare "one" is usually a pronoun ("this one", "one moment"); it counts only before these.
_ONE_UNITS = {"percent", "per", "degree", "degrees", "hour", "hours", "minute", "minutes",
              "second", "seconds", "o'clock", "am", "pm"}

# Letters that may follow digits directly and still leave a number ("21c", "2nd", "30min").
_SUFFIXES = {"am", "pm", "st", "nd", "rd", "th", "c", "f", "h", "hr", "hrs", "min", "mins", "s",
             "sec", "secs"}
_MERIDIEM = r"(?:\s*(a\.m\.|p\.m\.|am|pm)(?![a-z]))?"
_DAYPART = r"(?:\s+(in the morning|in the afternoon|in the evening|at night|tonight))?"


@dataclass(frozen=True)
class Quantity:
    """One number in a reply: ``value`` is canonical text ("21.5", "19:30"); ``unit`` one of
    "%", "°C", "°F", "°", "min", "time" or ""; ``start``/``end`` index the normalised text."""

    value: str
    unit: str
    start: int
    end: int
    minutes: float | None = None  # a duration in minutes, for unit "min"


def format_number(x: float) -> str:
    """Canonical text of a number: "21", "21.5", "-3" (never "21.0" or "21.50")."""
    if x == int(x):
        return str(int(x))
    return f"{x:.4f}".rstrip("0").rstrip(".")


def normalise_text(text: str) -> str:
    """Lower case with typographic variants folded, keeping one character per input character."""
    table = str.maketrans({"\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2019": "'", "\u2018": "'",
                           "\u00ba": "°", "\u00a0": " ", "\u201c": '"', "\u201d": '"'})
    return text.lower().translate(table)


def _word_spans(text: str):
    return [(m.start(), m.end(), m.group()) for m in re.finditer(r"[a-z]+(?:'[a-z]+)?", text)]


def _read_number(words: list[str], i: int) -> tuple[float, int] | None:
    """Longest number spelled from words[i:], as (value, index after it), or None."""
    total, cur, last, j = 0, 0, None, i
    n = len(words)
    while j < n:
        w = words[j]
        nxt = words[j + 1] if j + 1 < n else ""
        if w == "a" and last is None and nxt in _SCALES:
            cur, last = 1, "unit"
        elif w in UNITS and (last in (None, "hundred", "thousand", "and")
                             or (last == "tens" and UNITS[w] > 0)):
            cur, last = cur + UNITS[w], "unit"
        elif w in TEENS and last in (None, "hundred", "thousand", "and"):
            cur, last = cur + TEENS[w], "teen"
        elif w in TENS and last in (None, "hundred", "thousand", "and"):
            cur, last = cur + TENS[w], "tens"
        elif w == "hundred" and last in ("unit", "teen", "tens") and 0 < cur < 100:
            cur, last = cur * 100, "hundred"
        elif w == "thousand" and last in ("unit", "teen", "tens", "hundred") and cur > 0:
            total, cur, last = total + cur * 1000, 0, "thousand"
        elif w == "and" and last in ("hundred", "thousand") and nxt in _SMALL:
            last = "and"
        elif w == "point" and last in ("unit", "teen", "tens") and nxt in UNITS:
            digits = []
            j += 1
            while j < n and words[j] in UNITS:
                digits.append(str(UNITS[words[j]]))
                j += 1
            return float(f"{total + cur}.{''.join(digits)}"), j
        else:
            break
        j += 1
    if last is None:
        return None
    return float(total + cur), j


def spell_out_numbers(text: str) -> str:
    """Replace number words with digits; other text is left as it was."""
    # Runs of words joined only by spaces or hyphens ("twenty-five", "a hundred and ten").
    runs: list[list[tuple[int, int, str]]] = []
    for span in _word_spans(text):
        if runs and re.fullmatch(r"[ \t-]*", text[runs[-1][-1][1]:span[0]]):
            runs[-1].append(span)
        else:
            runs.append([span])
    pieces, pos = [], 0
    for run in runs:
        words = [w for _, _, w in run]
        i = 0
        while i < len(words):
            read = _read_number(words, i)
            lone_one = read is not None and read[1] == i + 1 and words[i] == "one" and (
                read[1] >= len(words) or words[read[1]] not in _ONE_UNITS)
            if read is None or lone_one:
                i += 1
                continue
            value, j = read
            pieces += [text[pos:run[i][0]], format_number(value)]
            pos, i = run[j - 1][1], j
    pieces.append(text[pos:])
    return "".join(pieces)


def _spoken_times(text: str) -> str:
    """Rewrite "half past 7", "quarter to 8", "7 o'clock", "noon" as clock times ("7:30")."""
    text = re.sub(r"\bhalf past (\d{1,2})\b", lambda m: f"{m.group(1)}:30", text)
    text = re.sub(r"\bquarter past (\d{1,2})\b", lambda m: f"{m.group(1)}:15", text)
    text = re.sub(r"\bquarter to (\d{1,2})\b",
                  lambda m: f"{(int(m.group(1)) - 1) or 12}:45", text)
    text = re.sub(r"\b(\d{1,2}) ?o'?clock\b", lambda m: f"{m.group(1)}:00", text)
    text = re.sub(r"\b(?:12 )?(?:noon|midday)\b", "12:00", text)
    return re.sub(r"\b(?:12 )?midnight\b", "0:00", text)


def _clock(hour: int, minute: int, meridiem: str | None, daypart: str | None) -> str | None:
    if minute > 59 or hour > 23:
        return None
    if meridiem:
        half = meridiem[0] + "m"
    elif daypart == "at night":
        half = "pm" if 6 <= hour < 12 else "am"
    elif daypart:
        half = "am" if daypart == "in the morning" else "pm"
    else:
        half = None
    if half and 1 <= hour <= 12:
        hour = hour % 12 + (12 if half == "pm" else 0)
    elif half and meridiem:
        return None  # "13 pm", "0 am": not a time
    return f"{hour:02d}:{minute:02d}"


_TIME_PATTERNS = [
    re.compile(r"(?<![\d:.])(\d{1,2}):(\d{2})(?![\d:])" + _MERIDIEM + _DAYPART),
    re.compile(r"(?<![\d:.a-z])(\d{1,2})()\s*(a\.m\.|p\.m\.|am|pm)(?![a-z])" + _DAYPART),
    # "seven thirty pm" arrives here as "7 30 pm"; without am/pm or a daypart it stays two numbers.
    re.compile(r"(?<![\d:.a-z])(\d{1,2}) ([1-5]\d)(?:\s*(a\.m\.|p\.m\.|am|pm)(?![a-z])|\s+("
               r"in the morning|in the afternoon|in the evening|at night|tonight))"),
    re.compile(r"(?<![\d:.a-z])(\d{1,2})()()\s+(in the morning|in the afternoon|in the evening|at night"
               r"|tonight)"),
]

_UNIT_PATTERNS = [
    (re.compile(r"\s*(?:%|percent\b|per cent\b)"), "%"),
    (re.compile(r"\s*(?:°|degrees?\b|deg\b)\s*(?:(c|f|celsius|fahrenheit|centigrade)\b)?"), "°"),
    (re.compile(r"(?:(c|f)\b|\s*(celsius|fahrenheit|centigrade)\b)"), "°"),
    (re.compile(r"\s*(hours?|hrs?|h)\b"), "h"),
    (re.compile(r"\s*(minutes?|mins?)\b"), "min"),
    (re.compile(r"\s*(seconds?|secs?)\b"), "s"),
]
_NUMBER = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?")


def _unit_after(text: str, end: int) -> tuple[str, float, int]:
    """(unit, factor to minutes, end of the unit) for the unit written right after a number."""
    for pattern, unit in _UNIT_PATTERNS:
        m = pattern.match(text, end)
        if not m:
            continue
        if unit == "°":
            scale = next((g for g in m.groups() if g), "")
            return {"c": "°C", "f": "°F"}.get(scale[:1], "°"), 0.0, m.end()
        if unit in ("h", "min", "s"):
            # A lone "h" must touch the number ("2h"); "5 h" is more often a stray letter.
            if m.group(1) == "h" and m.start(1) != end:
                continue
            return "min", {"h": 60.0, "min": 1.0, "s": 1 / 60}[unit], m.end()
        return unit, 0.0, m.end()
    return "", 0.0, end


def extract_quantities(text: str) -> tuple[str, list[Quantity]]:
    """The normalised text and every number in it, in order of appearance."""
    text = _spoken_times(spell_out_numbers(normalise_text(text)))
    found: list[Quantity] = []
    masked = list(text)
    for pattern in _TIME_PATTERNS:
        for m in pattern.finditer("".join(masked)):
            hour, minute, meridiem, daypart = m.groups()
            clock = _clock(int(hour), int(minute or 0), meridiem, daypart)
            if clock is None:
                continue
            found.append(Quantity(clock, "time", m.start(), m.end()))
            masked[m.start():m.end()] = " " * (m.end() - m.start())
    masked_text = "".join(masked)
    for m in _NUMBER.finditer(masked_text):
        start, end = m.span()
        before = masked_text[start - 1] if start else " "
        if before.isalnum() or before in "._":
            continue
        if before == "-" and start >= 2 and masked_text[start - 2].isalpha():
            continue  # "covid-19", "wi-fi-6": part of a name
        after = re.match(r"[a-z]+", masked_text[end:])
        if after and after.group() not in _SUFFIXES:
            continue  # "3d", "4k", "5g": part of a name
        value = float(m.group(1).replace(",", "") + (m.group(2) or ""))
        if before == "-" and not re.search(r"\d\s*-$", masked_text[:start]):
            value, start = -value, start - 1
        unit, factor, unit_end = _unit_after(masked_text, end)
        found.append(Quantity(format_number(value), unit, start, unit_end,
                              value * factor if unit == "min" else None))
    found.sort(key=lambda q: q.start)
    return text, _share_range_units(text, found)


def _share_range_units(text: str, found: list[Quantity]) -> list[Quantity]:
    """Give the first end of a range the unit of the second: "20-22°C", "between 20 and 22%"."""
    out = list(found)
    for i in range(len(out) - 2, -1, -1):
        first, second = out[i], out[i + 1]
        if first.unit or second.unit not in ("%", "°C", "°F", "°"):
            continue
        if re.fullmatch(r"\s*(?:-|to|and|or)\s*", text[first.end:second.start]):
            out[i] = Quantity(first.value, second.unit, first.start, first.end)
    return out
