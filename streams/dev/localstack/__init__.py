"""The local stack: a real Kafka broker and schema registry run as local JVM processes.

It plays the part ``confluent local`` plays for Confluent Platform, from artifacts published on
Maven Central, so that a machine without Docker still runs the real components.
"""

from streams.dev.localstack.display import start_showing
from streams.dev.localstack.errors import StackError
from streams.dev.localstack.stack import ComponentStatus, LocalStack

__all__ = ["ComponentStatus", "LocalStack", "StackError", "start_showing"]
