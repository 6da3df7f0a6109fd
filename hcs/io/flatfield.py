"""Harmony flatfield (FFC) profiles: parsing and evaluation of the polynomial surfaces.

Harmony stores one ``FlatfieldProfile`` per channel, in the index (``Maps/Map/Entry``) and in
``FFC_Profile/*.xml``. The text is a YAML flow mapping (FORMATS.md 1.7)::

    {Background: {Character: NonFlat, Mean: 1039.144, ...,
                  Profile: {Coefficients: [[c00], [c10, c01], [c20, c11, c02], ...],
                            Dims: [1080, 1080], Origin: [539.5, 539.5],
                            Scale: [0.00092592593, 0.00092592593], Type: Polynomial},
                  Quality: 1.0},
     Channel: 1, ChannelName: Alexa 647, Foreground: {...}, Version: Acapella:2013}

:func:`parse_flatfield_profile` reads it with ``yaml.safe_load`` (which parses every real variant
seen) and undoes PyYAML's surprises: ``NaN``/``INF`` stay strings in YAML 1.1 and become floats
here, and ``Character: Null`` (a Harmony word, not a missing value) is kept as ``"Null"``.

:func:`flatfield_surface` evaluates a profile. Nothing in hcs applies it to pixels by default:
there is no public specification of Harmony's ``ApplyCorrection`` (FORMATS.md 1.7), so the
surface is metadata until validated against a Harmony-corrected export.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import yaml

from hcs.errors import InputError

_NONFINITE = re.compile(r"^[+-]?(nan|inf|infinity)$", re.IGNORECASE)


def _fix_values(obj: Any, key: str | None = None) -> Any:
    if isinstance(obj, dict):
        return {k: _fix_values(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_fix_values(v) for v in obj]
    if obj is None and key == "Character":
        return "Null"
    if isinstance(obj, str) and key != "ChannelName" and _NONFINITE.match(obj):
        s = obj.lower().lstrip("+")
        return math.nan if "nan" in s else (-math.inf if s.startswith("-") else math.inf)
    return obj


def parse_flatfield_profile(text: str, where: str = "") -> dict[str, Any]:
    """Parse one Harmony ``FlatfieldProfile`` text into a dict.

    Parameters
    ----------
    text
        The element text (a YAML flow mapping).
    where
        Names the file and channel for the error message.

    Returns
    -------
    dict
        The profile with ``NaN``/``INF`` as floats and ``Character: Null`` kept as ``"Null"``.

    Raises
    ------
    InputError
        If the text is not a mapping.

    Examples
    --------
    >>> p = parse_flatfield_profile(
    ...     "{Background: {Character: Null, Mean: NaN, Profile: {Type: Identity}, Quality: 0.25},"
    ...     ' Channel: 4, ChannelName: "405ex, 570-630-em)", Version: Acapella:2013}')
    >>> p["Background"]["Character"], math.isnan(p["Background"]["Mean"]), p["ChannelName"]
    ('Null', True, '405ex, 570-630-em)')
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{where}: unreadable FlatfieldProfile ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{where}: FlatfieldProfile is not a mapping: {text[:80]!r}")
    return _fix_values(data)


def flatfield_surface(
    profile: dict[str, Any], which: str = "Background", shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Evaluate the flatfield surface of a parsed Harmony profile.

    Convention (FORMATS.md 1.7; Harmony publishes no specification): ``Coefficients`` holds one
    row per total degree ``n`` = 0..4 with ``n + 1`` entries, and

        S(x, y) = sum_n sum_k  c[n][k] * x**(n - k) * y**k

    with normalised coordinates ``y = (row - Origin[0]) * Scale[0]`` and
    ``x = (col - Origin[1]) * Scale[1]`` (``Dims`` = [height, width]; with ``Origin`` the image
    centre and ``Scale`` = 1/size, x and y span [-0.5, 0.5]). This is the degree-graded reading
    shared by the two independent implementations FORMATS.md lists (PyPhenix
    ``generate_correction_image`` and spacr ``_harmony_polynomial``, which agree term by term);
    it is also the one consistent with real profiles, whose degree-2 row is two large similar
    values around a small middle (x**2, xy, y**2 of a radially symmetric vignetting surface).
    Non-degree-graded (``x**i * y**j``) and separable readings are rejected for that reason.
    For the square profiles seen so far the row/column order of ``Origin``/``Scale`` cannot be
    verified from data; it follows PyPhenix.

    Parameters
    ----------
    profile
        A dict from :func:`parse_flatfield_profile` (stored on ``Channel.flatfield``).
    which
        ``"Background"`` (Harmony "Basic") or ``"Foreground"`` (Harmony "Advanced").
    shape
        (rows, cols) to evaluate on; default ``Dims``. Pixel coordinates are those of the
        profile, so a different shape evaluates a crop (or extension) from the top-left corner.

    Returns
    -------
    numpy.ndarray
        float64 surface (about 1 in the centre); all ones for ``Type: Identity``.

    Examples
    --------
    >>> prof = {"Background": {"Profile": {"Type": "Polynomial",
    ...     "Coefficients": [[1.0], [0.0, 0.5]], "Dims": [3, 3], "Origin": [1, 1],
    ...     "Scale": [0.5, 0.5]}}}
    >>> flatfield_surface(prof)[:, 0]  # 1 + 0.5 * y, y = -0.5, 0, 0.5 down the rows
    array([0.75, 1.  , 1.25])
    """
    part = profile.get(which)
    if not isinstance(part, dict):
        raise InputError(f"flatfield profile has no {which!r} part (has {sorted(profile)})")
    prof = part.get("Profile") or {}
    dims = prof.get("Dims")
    if shape is None:
        if not dims or len(dims) != 2:
            raise InputError(f"flatfield {which} profile has no Dims; pass shape=")
        shape = (int(dims[0]), int(dims[1]))
    if prof.get("Type", "Identity") != "Polynomial":
        return np.ones(shape, dtype=np.float64)
    try:
        coeffs = [[float(c) for c in row] for row in prof["Coefficients"]]
        origin = [float(v) for v in prof["Origin"]]
        scale = [float(v) for v in prof["Scale"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"flatfield {which} profile is incomplete: {exc}") from exc
    for n, row in enumerate(coeffs):
        if len(row) != n + 1:
            raise InputError(
                f"flatfield {which} profile: degree-{n} row has {len(row)} coefficients, "
                f"expected {n + 1}"
            )
    y = ((np.arange(shape[0], dtype=np.float64) - origin[0]) * scale[0])[:, None]
    x = ((np.arange(shape[1], dtype=np.float64) - origin[1]) * scale[1])[None, :]
    xp = [np.ones_like(x)]
    yp = [np.ones_like(y)]
    for _ in range(len(coeffs)):
        xp.append(xp[-1] * x)
        yp.append(yp[-1] * y)
    out = np.zeros(shape, dtype=np.float64)
    for n, row in enumerate(coeffs):
        for k, c in enumerate(row):
            if c:
                out += c * (xp[n - k] * yp[k])
    return out
