"""InternVL: the vision encoder, pixel shuffle and projector beside the one decoder; checkpoints of both layouts."""

from puyu.model.vision.checkpoint import load_vlm, save_vlm
from puyu.model.vision.config import VisionConfig, VLMConfig, is_vlm_folder
from puyu.model.vision.model import VisionLanguageModel

__all__ = ["VLMConfig", "VisionConfig", "VisionLanguageModel", "is_vlm_folder", "load_vlm", "save_vlm"]
