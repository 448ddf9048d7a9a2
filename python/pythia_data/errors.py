"""The exception raised for corrupt or mismatched data files and invalid requests."""

from pythia_data._core import PythiaDataError

__all__ = ["PythiaDataError"]
