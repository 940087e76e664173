"""Datasets that ship with neurorec, loaded as :class:`~neurorec.data.Recording` objects."""

from neurorec.datasets.locust_al import load_locust_al
from neurorec.datasets.registry import DatasetInfo, list_datasets, load
from neurorec.datasets.v1_gratings import load_v1_gratings

__all__ = ["DatasetInfo", "list_datasets", "load", "load_locust_al", "load_v1_gratings"]
