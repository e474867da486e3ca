"""Offline training and evaluation (torch + transformers); writes model bundles."""
