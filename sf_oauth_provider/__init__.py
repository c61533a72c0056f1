"""Salesforce OAuth 2.0 provider for Apache Airflow 3."""

__version__ = "0.1.0"

__all__ = ["__version__"]
