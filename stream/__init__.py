"""Faust agents: events in, fused recommendations out."""
