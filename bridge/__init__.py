"""ML Event Bridge: Azure ML and SageMaker lifecycle events, normalized to CloudEvents and routed to Kafka."""

__version__ = "0.1.0"
