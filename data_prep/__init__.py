"""Offline dataset preparation: synthetic generator and ArrayRecord shard builders."""
