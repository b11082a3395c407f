"""keras.backend's layout setting: which image layout fastconv.keras layers assume.

Keras's default is "channels_last" (NHWC images, (H, W, C) shapes); fastconv.keras follows it.
fastconv's own layers (fastconv.layers) are channels-first whatever this says.
"""
from __future__ import annotations

__all__ = ["image_data_format", "set_image_data_format", "floatx", "epsilon"]

_IMAGE_DATA_FORMAT = "channels_last"


def image_data_format():
    """The default data_format of fastconv.keras's image layers: "channels_last" unless set."""
    return _IMAGE_DATA_FORMAT


def set_image_data_format(data_format):
    """Set the default data_format of fastconv.keras's image layers made from now on."""
    global _IMAGE_DATA_FORMAT
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"set_image_data_format: data_format must be 'channels_last' or "
                         f"'channels_first', got {data_format!r}")
    _IMAGE_DATA_FORMAT = data_format


def floatx():
    """fastconv computes in float32."""
    return "float32"


def epsilon():
    """Keras's fuzz factor, 1e-7."""
    return 1e-7
