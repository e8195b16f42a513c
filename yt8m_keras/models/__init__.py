"""Model families, one per file, and the registry the trainer looks builders up in.

The registry is an explicit dict (name -> builder) rather than decorator registration, so
what is available is visible here and importing a module never changes it.
"""

from yt8m_keras.models.xception import build_xception

MODELS = {
    "xception": build_xception,
}
