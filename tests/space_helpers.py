"""A search space without a supernet, for the one-shot strategies' error tests.

Imported as ``from space_helpers import PlainSpace`` (pytest puts ``tests/`` on sys.path)."""

import torch

from lightning_nas.spaces.base import Arch, SearchSpace


class PlainSpace(SearchSpace):
    """Only the abstract methods: one architecture, no supernet."""

    name = "plain"

    def sample(self, rng):
        return Arch("plain", {"a": 1})

    def mutate(self, arch, rng):
        return arch

    def check(self, arch):
        pass

    def to_string(self, arch):
        return "a"

    def parse(self, text):
        return Arch("plain", {"a": 1})

    def build(self, arch, **kwargs):
        return torch.nn.Identity()
