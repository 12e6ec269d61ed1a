"""Strict state-dict checks with one-line errors."""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from vocabseg.errors import CheckpointError


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str,
                     optional_prefixes: tuple[str, ...] = (),
                     fix: str = "is it a checkpoint of another model? pass the matching --model") -> None:
    """Raises a one-line :class:`CheckpointError` listing missing, unexpected and mis-shaped keys.

    Args:
        optional_prefixes: keys of ``model`` under these prefixes may be absent from ``state``
            (e.g. a frozen CLIP loaded from its own file).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.startswith(optional_prefixes or ("\0",))]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if keys:
            problems.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
    if problems:
        raise CheckpointError(f"{source} does not fit this architecture: {'; '.join(problems)}; {fix}")


class KeyTable:
    """An explicit, two-way table of key prefixes between an official checkpoint and our modules.

    Rows are ``(official prefix, our prefix)``; ``{i}`` (or any ``{name}``) in a prefix stands for
    a layer index, copied to the same placeholder on the other side.
    The first matching row wins, so specific rows go before general ones. A key no row
    explains is an error listing examples, never silently dropped.
    """

    def __init__(self, rows: list[tuple[str, str]], *, family: str, dropped: tuple[str, ...] = ()):
        """
        Args:
            rows: (official prefix, our prefix) pairs, most specific first.
            family: the paper's name, for error messages.
            dropped: official keys (or key prefixes, with placeholders) that hold no model state:
                loss buffers, constants, modules the official forward never uses.
        """
        self.rows, self.family, self.dropped = rows, family, dropped
        self._dropped = [_compile(prefix) for prefix in dropped]
        self._forward = [(_compile(src), dst) for src, dst in rows]
        self._backward = [(_compile(dst), src) for src, dst in rows]

    def forward(self, state: Mapping, *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
        """Official names -> ours (numpy arrays become tensors); raises CheckpointError naming unexplained keys."""
        renamed, unknown = {}, []
        for key, value in state.items():
            if any(pattern.match(key) for pattern in self._dropped):
                continue
            new = _rename(key, self._forward)
            if new is None:
                unknown.append(key)
            else:
                renamed[new] = torch.as_tensor(value)
        if unknown:
            raise CheckpointError(f"{source}: {len(unknown)} key(s) not in the {self.family} layout, "
                                  f"e.g. {unknown[:3]}")
        return renamed

    def backward(self, state: dict) -> dict:
        """Our names -> official ones."""
        renamed = {}
        for key, value in state.items():
            new = _rename(key, self._backward)
            if new is None:
                raise CheckpointError(f"key {key!r} has no official {self.family} name")
            renamed[new] = value
        return renamed


_PLACEHOLDER = re.compile(r"\\\{(\w+)\\\}")  # an escaped "{name}"


def _compile(template: str) -> re.Pattern:
    return re.compile("^" + _PLACEHOLDER.sub(r"(?P<\1>\\d+)", re.escape(template)))


def _rename(key: str, rules: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, template in rules:
        match = pattern.match(key)
        if match:
            prefix = template
            for name, value in match.groupdict().items():
                prefix = prefix.replace("{" + name + "}", value)
            return prefix + key[match.end():]
    return None
