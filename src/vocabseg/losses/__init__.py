"""Set-prediction losses shared by the mask-classification families (Mask2Former/MaskFormer style)."""
from vocabseg.losses.matcher import HungarianMatcher
from vocabseg.losses.set_criterion import SetCriterion, build_criterion

__all__ = ["HungarianMatcher", "SetCriterion", "build_criterion"]
