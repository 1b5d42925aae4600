"""Shared running state in Redis: cache, API keys, rate limits, chat sessions."""
