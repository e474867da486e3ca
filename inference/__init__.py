"""Serving core: bundle loading, ONNX encoders, FAISS index, fusion. Never imports torch."""

from inference.types import Recommender, Request, Result, ScoredItem

__all__ = ["Recommender", "Request", "Result", "ScoredItem"]
