"""Checks that refuse a run up front, before any cluster or worker starts.

An error that would hit every field the same way (no pixel size, a ``--channels`` entry naming
a channel the plate lacks, a model whose inputs the plate cannot feed) is found here, from the
plate's metadata and the model card alone (no pixel is read, torch is not imported), and
reported as one :class:`~hcs.errors.InputError` naming the fix, instead of one traceback per
field. :func:`preflight` takes an opened plate (:class:`hcs.io.omezarr.Plate`) or an
acquisition just read from an export (:class:`hcs.io.acquisition.Acquisition`), so ``hcs
analyze`` refuses an export before converting it.
"""

from __future__ import annotations

from typing import Any

from hcs.errors import InputError

__all__ = ["preflight"]


def _channel_names(plate: Any) -> list[str]:
    return [c if isinstance(c, str) else c.name for c in plate.channels]


def _name(plate: Any) -> str:
    return str(getattr(plate, "path", None) or getattr(plate, "source", None) or "the plate")


def _pixel_reason(plate: Any) -> str:
    sources = getattr(plate, "sources", None)
    if sources is None:
        sources = (getattr(plate, "attrs", None) or {}).get("sources", {})
    why = str(sources.get("pixel_size_um", "")).removeprefix("unknown").lstrip(": ")
    return f" ({why})" if why else ""


def _roles(card: Any) -> list[str]:
    from hcs.engine.model import card_roles

    return [] if card is None else card_roles(card)  # None: a detection-only run


def preflight(
    plate: Any,
    card: Any,
    *,
    detector: dict[str, Any] | None = None,
    nucleus_channel: str | int | None = None,
    channel_map: dict[str, str] | None = None,
    cell_channel: str | None = None,
    pixel_fix: str = "convert it again with --pixel-size UM",
) -> None:
    """Refuse a run that would fail on every field, with one line naming the fix.

    Parameters
    ----------
    plate
        A :class:`~hcs.io.omezarr.Plate` or an :class:`~hcs.io.acquisition.Acquisition`
        (``channels``, ``pixel_size_um``, and ``path``/``source`` for the message).
    card
        The model card (:func:`hcs.engine.model.model_card`): its input roles; ``None`` for a
        detection-only run.
    detector
        :func:`hcs.engine.detector.detector_info` of the detector (a learned detector has input
        roles too); default: a classical method.
    nucleus_channel, channel_map
        As ``hcs run --nucleus-channel`` / ``--channels`` (role -> plate channel name or index).
    cell_channel
        As ``hcs run --cell-channel`` (``NAME[:cytoplasm|:membrane]``).
    pixel_fix
        How to give a missing pixel size (the plate's: convert again; an export's: the option).

    Raises
    ------
    InputError
        No pixel size; a ``--channels``, ``--nucleus-channel`` or ``--cell-channel`` entry
        naming a channel the plate lacks, or a role neither the model nor the detector
        takes; a model (or detector) input the plate has no channel for.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> card = NS(name="m", channels=[NS(name="nucleus")])
    >>> plate = NS(path="p", channels=["DNA", "GFP"], pixel_size_um=(0.5, 0.5))
    >>> preflight(plate, card)
    >>> preflight(plate, card, channel_map={"nucleus": "H2B"})
    Traceback (most recent call last):
    ...
    hcs.errors.InputError: --channels nucleus=H2B: p has no channel 'H2B' (its channels: DNA, GFP)
    """
    from hcs.engine.model import plate_channel_for
    from hcs.engine.processor import nucleus_channel_index

    name = _name(plate)
    if plate.pixel_size_um is None:
        raise InputError(f"{name} has no pixel size{_pixel_reason(plate)}; {pixel_fix}")
    channels = _channel_names(plate)
    shown = ", ".join(channels)
    mapping = {str(k): str(v) for k, v in (channel_map or {}).items()}
    det_roles = list((detector or {}).get("channels") or [])
    roles = _roles(card)
    for role, want in mapping.items():
        known = want.isdigit() and int(want) < len(channels)
        if not known and want.lower() not in [c.lower() for c in channels]:
            raise InputError(f"--channels {role}={want}: {name} has no channel {want!r} "
                             f"(its channels: {shown})")
        if role not in roles and role not in det_roles:
            takes = ", ".join(dict.fromkeys(roles + det_roles))
            extra = " (detection on a classical method uses --nucleus-channel)" if not det_roles \
                else ""
            who = f"neither model {card.name} nor the detector takes" if card is not None \
                else "the detector of this detection-only run does not take"
            raise InputError(f"--channels {role}={want}: {who} a {role!r} input "
                             f"(they take: {takes or 'none'}){extra}")
    if nucleus_channel is not None and (detector or {}).get("kind", "method") == "method":
        try:
            nucleus_channel_index(channels, nucleus_channel)
        except InputError:
            raise InputError(f"--nucleus-channel {nucleus_channel}: {name} has no such channel "
                             f"(its channels: {shown})") from None
    if cell_channel:
        want = str(cell_channel).split(":")[0].strip()
        try:
            nucleus_channel_index(channels, want)
        except InputError:
            raise InputError(f"--cell-channel {cell_channel}: {name} has no channel {want!r} "
                             f"(its channels: {shown})") from None
    for who, needed in ((f"model {getattr(card, 'name', None)}", roles),
                        (f"detector {(detector or {}).get('name')}", det_roles)):
        for role in needed:
            try:
                plate_channel_for(role, channels, mapping)
            except InputError:
                raise InputError(
                    f"{who} needs {len(needed)} input channel(s) ({', '.join(needed)}); {name} "
                    f"has {len(channels)} ({shown}) and none plays {role!r}: map one with "
                    f"--channels {role}=NAME, or name the channels with --channel-names at "
                    "convert") from None
