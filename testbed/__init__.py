"""Test machinery, not product code: broker launchers (tansu, moto_server, azurite), the AMQP 1.0 Event Hubs
test server, helpers that drive ``bridge run`` as a subprocess and read Kafka topics, and the local stack
(``make stack``). Used by ``tests/``, ``bench/`` and ``make stack``; never installed with the package (only
``bridge*`` is packaged). What users need to test their own routes stays in ``bridge.testing``.
"""
