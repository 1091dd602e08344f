"""Chaos scenarios: declarative steps against a running topology, judged by a checker."""
