"""Classifier inputs as data: channels, how they are composed, crop size and margin.

The facts are part of each assay's single declaration (:data:`hcs.assays.registry.ASSAYS`);
:func:`get_input_spec` returns that declaration's input part as an :class:`InputSpec`. The crop
and composition code (:mod:`hcs.classify.crops`) and the model card read these facts; nothing
here runs a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class InputChannel:
    """One input channel of a classifier.

    Parameters
    ----------
    name
        Channel role (``brightfield``, ``membrane``, ``nucleus``, ``red`` ...).
    meaning
        One line for the model card.
    rescale
        ``"percentile"``: 1-99.8 % of the crop's image mapped to 0-255 (fluorescence composites);
        ``"none"``: values used as they are (8-bit RGB images).
    """

    name: str
    meaning: str = ""
    rescale: str = "none"


@dataclass(frozen=True)
class InputSpec:
    """What a classifier of one assay sees.

    Parameters
    ----------
    assay
        Registry name.
    channels
        Input channels, in tensor order.
    crop_size
        Side of the square crop given to the network (pixels).
    margin
        Context added on every side of the box, as a fraction of the box's longer side.
    square
        Pad the (box + margin) region to a square before resizing (AIM-CICs), so the aspect
        ratio is kept.
    pad_mode
        How pixels outside the image are filled (``constant`` zero, ``edge``, ``reflect``).
    label_map
        Annotation names -> class names (e.g. LDC ``Living Cell`` -> ``live``).
    optional_channels
        Channels a model may add (e.g. Hoechst for livedead).

    Examples
    --------
    >>> from hcs.assays import get_input_spec
    >>> s = get_input_spec("cic")
    >>> [c.name for c in s.channels], s.crop_size
    (['membrane', 'brightfield', 'nucleus'], 224)
    """

    assay: str
    channels: tuple[InputChannel, ...]
    crop_size: int
    margin: float = 0.0
    square: bool = True
    pad_mode: str = "constant"
    label_map: dict[str, str] = field(default_factory=dict, hash=False)
    optional_channels: tuple[InputChannel, ...] = ()

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channels)


#: The LDC set's RGB brightfield: colour (trypan blue) is part of the input.
LDC_RGB_CHANNELS: tuple[InputChannel, ...] = (
    InputChannel("red", "red plane of the RGB brightfield (trypan-blue style) image; grey images "
                 "are replicated to R=G=B"),
    InputChannel("green", "green plane of the RGB brightfield image"),
    InputChannel("blue", "blue plane of the RGB brightfield image (trypan blue uptake)"),
)
