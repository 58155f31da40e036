"""Sources: Kafka, Event Hubs, SQS. Each module holds its config model beside its code."""
