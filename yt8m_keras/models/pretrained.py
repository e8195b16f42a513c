"""`keras.applications` backbones with optional pretrained weights, shared by the image model families."""

import os


def build_application(application, weights, **kwargs):
    """Builds a `keras.applications` model, with download and file errors as ValueErrors.

    `weights="imagenet"` downloads a file on first use; without network Keras raises a
    bare `Exception` ("URL fetch failure"). Say what to do instead: a local weights file.
    """
    if weights not in (None, "imagenet") and not os.path.exists(weights):
        raise ValueError(f"weights file not found: {weights!r} (use None, 'imagenet' or a path)")
    try:
        return application(weights=weights, **kwargs)
    except Exception as e:  # noqa: BLE001 -- keras.utils.get_file raises a bare Exception
        if weights != "imagenet":
            raise
        raise ValueError(
            f"weights='imagenet' needs a download of the pretrained file, which failed "
            f"({type(e).__name__}: {e}); on a machine without network, download it "
            "elsewhere and pass its path as model.args.weights"
        ) from None
