"""The pipeline stages: dedup, reorder, route, and the core that joins them to a sink."""

from bridge.pipeline.core import Pipeline
from bridge.pipeline.dedup import Deduplicator, MemoryDedupStore
from bridge.pipeline.reorder import ReorderBuffer
from bridge.pipeline.router import Route, RouteFilter, Router

__all__ = ["Deduplicator", "MemoryDedupStore", "Pipeline", "ReorderBuffer", "Route", "RouteFilter", "Router"]
