"""Test helpers shipped with the product: in-memory source, capturing sink, broker process launchers.

Use them to test your own routes without brokers::

    from bridge.testing import InMemorySource, CapturingSink
"""

from bridge.testing.memory import CapturingSink, InMemorySource

__all__ = ["CapturingSink", "InMemorySource"]
