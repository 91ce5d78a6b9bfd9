"""Evaluation: multi-exemplar voting (pairwise methods) and direct prediction (the others), the
paper and honest protocols, the action-type and difficulty floors.

`aqa.evaluate.run.evaluate_variant` is the stage function behind `aqa evaluate`.
"""
