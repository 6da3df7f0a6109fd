"""Per-assay classifier inputs as data: channels, how they are composed, crop size and margin.

One frozen :class:`InputSpec` per assay of DESIGN.md ("The assays"). The crop and composition code
(:mod:`hcs.classify.crops`) and the model card read these facts; nothing here runs a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hcs.errors import InputError


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


INPUT_SPECS: dict[str, InputSpec] = {
    s.assay: s
    for s in (
        # AIM-CICs: RGB composite, membrane red, brightfield green, nucleus blue, each rescaled to
        # 0-255; crop padded to square then resized to 224 (ResNet-101 input).
        InputSpec(
            "cic",
            channels=(
                InputChannel("membrane", "membrane stain, red plane of the composite",
                             "percentile"),
                InputChannel("brightfield", "brightfield, green plane", "percentile"),
                InputChannel("nucleus", "nuclear stain, blue plane", "percentile"),
            ),
            crop_size=224,
            margin=0.0,
        ),
        # Stain-free live/dead: brightfield only (optionally + Hoechst). For RGB brightfield
        # images such as the LDC trypan-blue set the colour planes are the channels.
        InputSpec(
            "livedead",
            channels=(InputChannel(
                "brightfield", "brightfield, 8-bit grey (RGB images converted with ITU-R 601 "
                "luma weights; an image with R = G = B keeps its values)", "none"),),
            crop_size=48,
            margin=0.25,
            pad_mode="constant",
            label_map={"Living Cell": "live", "Dead Cell": "dead", "live": "live", "dead": "dead"},
            optional_channels=(InputChannel("hoechst", "Hoechst nuclear stain", "percentile"),),
        ),
        InputSpec(
            "cancer",
            channels=(InputChannel("brightfield", "brightfield", "percentile"),),
            crop_size=96,
            margin=0.25,
            optional_channels=(InputChannel("hoechst", "Hoechst nuclear stain", "percentile"),),
        ),
        InputSpec(
            "mitosis",
            channels=(InputChannel("nucleus", "DNA stain (max projection for z-stacks)",
                                   "percentile"),),
            crop_size=64,
            margin=0.25,
        ),
    )
}

#: The LDC set's RGB brightfield: colour (trypan blue) is part of the input.
LDC_RGB_CHANNELS: tuple[InputChannel, ...] = (
    InputChannel("red", "red plane of the RGB brightfield (trypan-blue style) image; grey images "
                 "are replicated to R=G=B"),
    InputChannel("green", "green plane of the RGB brightfield image"),
    InputChannel("blue", "blue plane of the RGB brightfield image (trypan blue uptake)"),
)


def get_input_spec(assay: str) -> InputSpec:
    """The :class:`InputSpec` of ``assay``.

    Examples
    --------
    >>> get_input_spec("livedead").label_map["Dead Cell"]
    'dead'
    """
    try:
        return INPUT_SPECS[str(assay).strip().lower()]
    except KeyError:
        raise InputError(f"unknown assay {assay!r}; known: {', '.join(INPUT_SPECS)}") from None
