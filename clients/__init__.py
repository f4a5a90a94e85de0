"""Clients of copytrade's public API (API.md): nothing here imports the service."""
