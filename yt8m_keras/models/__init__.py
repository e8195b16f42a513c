"""Model families, one per file, and the registry the trainer looks builders up in.

The registry is an explicit dict (name -> builder) rather than decorator registration, so
what is available is visible here and importing a module never changes it.
"""

from yt8m_keras.models.dbof import build_dbof_video_model, build_gated_dbof_video_model
from yt8m_keras.models.nextvlad import build_nextvlad_video_model
from yt8m_keras.models.segment import build_context_agnostic_segment_model, build_context_aware_segment_model
from yt8m_keras.models.xception import build_xception

MODELS = {
    # Cdiscount: images -> softmax over categories.
    "xception": build_xception,
    # YouTube-8M video level: {rgb, audio, mask} -> sigmoid per class.
    "nextvlad": build_nextvlad_video_model,
    "dbof": build_dbof_video_model,
    "gated_dbof": build_gated_dbof_video_model,
    # YouTube-8M segment level, built from a pretrained video-level model.
    "segment_agnostic": build_context_agnostic_segment_model,
    "segment_aware": build_context_aware_segment_model,
}
