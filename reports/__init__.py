"""Findings rules and report renderers (see the findings/reports issue)."""
