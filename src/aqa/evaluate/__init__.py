"""Evaluation: multi-exemplar voting, the paper and honest protocols, the action-type floor.

`aqa.evaluate.run.evaluate_variant` is the stage function behind `aqa evaluate`.
"""
