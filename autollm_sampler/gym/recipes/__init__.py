"""Recipes: each builds one registered task from the pinned raw files (see ``gym/manifest.json``)."""
