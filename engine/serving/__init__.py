"""A trained model put to use, for evaluate.py, predict.py and export.py (modules of the same names): a model loaded
from a checkpoint or an export (predictor.py), and probabilities turned into labels (decisions.py)."""
