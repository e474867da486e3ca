"""Serving core: bundle loading, ONNX encoders, FAISS index, fusion. Never imports torch."""

from inference.bundle import Bundle, BundleHandle, load_bundle
from inference.recommender import OnnxRecommender, load_recommender
from inference.settings import InferenceSettings
from inference.types import Recommender, Request, Result, ScoredItem

__all__ = [
    "Bundle",
    "BundleHandle",
    "InferenceSettings",
    "OnnxRecommender",
    "Recommender",
    "Request",
    "Result",
    "ScoredItem",
    "load_bundle",
    "load_recommender",
]
