"""Hugging Face side: a fault-injecting hub double, fixture repos, an intercepting proxy."""
