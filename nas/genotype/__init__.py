"""Genotypes: the plain-data description of an architecture that every strategy produces and
every builder consumes."""
from nas.genotype.core import CellGenotype, Edge, Genotype
from nas.genotype.nb201 import from_nb201_string, to_nb201_string
from nas.genotype.references import REFERENCES, get_reference, resolve_genotype
from nas.genotype.sampling import mutate, random_genotype

__all__ = ["CellGenotype", "Edge", "Genotype", "REFERENCES", "from_nb201_string", "get_reference",
           "mutate", "random_genotype", "resolve_genotype", "to_nb201_string"]
