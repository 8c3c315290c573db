"""Spec files: schema, loading, units and error locations."""

from pytest_tinyml.spec.loader import load_spec
from pytest_tinyml.spec.model import AUDIT_DEFAULTS, Constraints, Spec

__all__ = ["AUDIT_DEFAULTS", "Constraints", "Spec", "load_spec"]
