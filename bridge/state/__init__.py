"""ML lifecycle state (docs/design.md, "Pipeline semantics"): status transitions only, the current-state topic,
``bridge state``.

- ``attributes``: the attributes that define an event's state (``status``, ``data.SecondaryStatus``) as bytes;
- ``store``: the last published state and sequence per (route, subject), in memory or in the dedup Redis;
- ``lifecycle``: the decisions the delivery worker makes in sequence order (drop unchanged events from
  ``changes_only`` routes, add the state topic's record) and what it records once the sink confirmed them;
- ``topic``: creating the compacted state topic (``bridge state`` reads it back: ``bridge.tools.state_view``).
"""
