"""Engines behind the model servers. Only this package imports an inference library."""
