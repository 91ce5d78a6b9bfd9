"""Procedure-aware action quality assessment: FineDiving/TSA and FineParser as a pipeline."""

__version__ = "0.1.0"
