"""Adapter releases: how a request names a version, adapter validation and digests, merged weights per model,
evaluation of a version's answers, the release policy's verdict and the autopilot that acts on it."""
