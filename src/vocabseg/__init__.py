"""vocabseg: open-vocabulary image segmentation."""
from vocabseg.predictor import Prediction, Predictor
from vocabseg.segments import Segment
from vocabseg.zoo import list_models

__all__ = ["Predictor", "Prediction", "Segment", "list_models"]
__version__ = "0.1.0"
