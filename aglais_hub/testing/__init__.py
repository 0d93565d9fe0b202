"""Test harness: drive the platform the way a user's browser does."""
