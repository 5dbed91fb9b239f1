"""Dialogue datasets: load and validate, split per persona, generate the default set, summarise."""

from shpers_core.data.errors import DatasetError
from shpers_core.data.generate import generate_dataset
from shpers_core.data.loader import load_dataset
from shpers_core.data.schema import ROLES, Dataset, Dialogue, Message, Persona, PersonaSplit
from shpers_core.data.splits import split_dataset, split_sizes
from shpers_core.data.stats import dataset_stats
from shpers_core.data.writer import write_jsonl

__all__ = [
    "ROLES",
    "Dataset",
    "DatasetError",
    "Dialogue",
    "Message",
    "Persona",
    "PersonaSplit",
    "dataset_stats",
    "generate_dataset",
    "load_dataset",
    "split_dataset",
    "split_sizes",
    "write_jsonl",
]
