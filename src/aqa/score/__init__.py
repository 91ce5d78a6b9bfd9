"""`aqa score`: one new dive (a video or a folder of frames) scored by a trained variant.

clip.py (the dive's frames, cut as extract_frames cuts them), features.py (its I3D features,
computed as extract_features computed the model's cache), model.py (the trained seed and its
training pool, checked against the cache), steps.py (step frame ranges and the per-step
account), run.py (the whole scoring), report.py (text and JSON), figure.py (the timeline).
"""

from aqa.score.run import ScoreError, score_dive

__all__ = ["ScoreError", "score_dive"]
