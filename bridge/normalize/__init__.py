"""The normalizer: Azure ML (Event Grid, CloudEvents) and SageMaker (EventBridge, SNS) shapes in,
canonical ``CloudEvent``s out (docs/design.md, "Canonical envelope" and "Input shapes"; tables in
docs/mapping.md).

- ``normalize_all(msg)`` returns ``(events, errors)``: good events flow, each bad array element is reported
  with its index (the pipeline dead-letters errors).
- ``normalize(msg)`` returns the events or raises the first ``NormalizeError``.
- ``compute_sequence(time, status, explicit=, refine=)`` builds the ``sequence`` extension.
"""

from bridge.normalize.dispatch import from_object, normalize, normalize_all
from bridge.normalize.errors import NormalizeError
from bridge.normalize.sequence import compute_sequence

__all__ = ["NormalizeError", "compute_sequence", "from_object", "normalize", "normalize_all"]
