"""ENAS's LSTM controller (Pham et al., "Efficient Neural Architecture Search via Parameter
Sharing", ICML 2018, Sec. 2.3 and the micro search code) over any supernet's decisions.

The controller reads a supernet's path decisions (:class:`~lightning_nas.spaces.supernet.
Decision`) in order and samples them autoregressively with one LSTM layer:

* an **op** decision: logits from a linear head on the LSTM output (one head per distinct
  option set), the chosen option's embedding is the next input;
* an **input** decision (a cell node's input in the DARTS space): attention over the cell's
  earlier nodes, ``v^T tanh(W1 h_node + W2 h)``, as ENAS's pointer; the chosen node's state
  is the next input. Each cell starts with two zero anchors (its two input nodes) after two
  LSTM steps, and when a node's decisions are done one more LSTM step gives that node's
  anchor, as in the micro controller. Unlike ENAS, the two inputs of a node are distinct
  (the second draw masks the first), because the DARTS space's nodes take two different
  inputs.

Logits are divided by ``temperature`` and squashed to ``tanh_constant * tanh(.)``, with the
constant divided by ``op_tanh_reduce`` for op decisions (ENAS micro: 5.0, 1.10, 2.5). The
caps keep the policy exploring: with them an op's logits lie in [-0.44, 0.44], so one of
NAS-Bench-201's 5-way decisions never exceeds probability 0.38 and a cell (six of them)
never exceeds 0.38^6 = 0.003.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lightning_nas.spaces.supernet import Decision


@dataclass
class Sampled:
    """A sampled path: the choices, their summed log-probability and summed entropy
    (nats, with gradients to the controller's parameters)."""

    choices: dict[str, Any]
    log_prob: torch.Tensor
    entropy: torch.Tensor


class Controller(nn.Module):
    """The LSTM policy over a list of decisions (module docstring).

    Args:
        decisions: the supernet's path decisions, in sampling order.
        hidden: LSTM hidden units (100 in the ENAS paper).
        temperature: logits are divided by it (None: off).
        tanh_constant: logits become ``c * tanh(logits)`` (None: off).
        op_tanh_reduce: op decisions use ``tanh_constant / op_tanh_reduce``.
        init_range: uniform initialisation range of every weight (ENAS: 0.1).
    """

    def __init__(self, decisions: Sequence[Decision], *, hidden: int = 100,
                 temperature: float | None = 5.0, tanh_constant: float | None = 1.10,
                 op_tanh_reduce: float = 2.5, init_range: float = 0.1):
        super().__init__()
        if not decisions:
            raise ValueError("the controller needs at least one decision")
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        if temperature is not None and temperature <= 0:
            raise ValueError(f"temperature must be > 0 or None, got {temperature}")
        if tanh_constant is not None and tanh_constant <= 0:
            raise ValueError(f"tanh_constant must be > 0 or None, got {tanh_constant}")
        if op_tanh_reduce <= 0:
            raise ValueError(f"op_tanh_reduce must be > 0, got {op_tanh_reduce}")
        self.decisions = list(decisions)
        self.temperature = temperature
        self.tanh_constant = tanh_constant
        self.op_tanh_reduce = op_tanh_reduce
        self.hidden = hidden
        option_sets: list[tuple[Any, ...]] = []
        for d in self.decisions:
            if d.kind == "op" and d.options not in option_sets:
                option_sets.append(d.options)
            if d.kind not in ("op", "input"):
                raise ValueError(f"decision {d.label!r} has kind {d.kind!r}; 'op' or 'input'")
        self._head_of = {opts: n for n, opts in enumerate(option_sets)}
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.g_emb = nn.Parameter(torch.empty(1, hidden))  # the first input of every sequence
        self.heads = nn.ModuleList(nn.Linear(hidden, len(o)) for o in option_sets)
        self.embeddings = nn.ModuleList(nn.Embedding(len(o), hidden) for o in option_sets)
        self.attn_anchor = nn.Linear(hidden, hidden, bias=False)  # W1 h_node
        self.attn_query = nn.Linear(hidden, hidden, bias=False)  # W2 h
        self.attn_v = nn.Linear(hidden, 1, bias=False)
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range)

    # ---------------------------------------------------------------------------------------
    def _squash(self, logits: torch.Tensor, kind: str) -> torch.Tensor:
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            c = self.tanh_constant / (self.op_tanh_reduce if kind == "op" else 1.0)
            logits = c * torch.tanh(logits)
        return logits

    def _run(self, choices: Mapping[str, Any] | None, generator: torch.Generator | None
             ) -> Sampled:
        """Sample (``choices`` None) or score (teacher forcing) one sequence."""
        device = self.g_emb.device
        h = torch.zeros(1, self.hidden, device=device)
        c = torch.zeros(1, self.hidden, device=device)
        inputs = self.g_emb
        anchors: dict[str, list[torch.Tensor]] = {}  # cell -> node states (1, hidden)
        keys: dict[str, list[torch.Tensor]] = {}  # cell -> W1 node states
        picked: dict[str, list[int]] = {}  # group -> node indices already taken
        out: dict[str, Any] = {}
        log_prob = torch.zeros((), device=device)
        entropy = torch.zeros((), device=device)
        group = None
        for d in self.decisions:
            if group is not None and d.group != group and group in picked:
                # a node's decisions are done: one more step gives the node's anchor
                h, c = self.lstm(inputs, (h, c))
                cell = group.rsplit(".", 1)[0]
                anchors[cell].append(h)
                keys[cell].append(self.attn_anchor(h))
                inputs = self.g_emb
            group = d.group
            if d.kind == "input":
                cell = d.group.rsplit(".", 1)[0]
                if cell not in anchors:  # the cell's two input nodes: zero anchors
                    anchors[cell], keys[cell] = [], []
                    for _ in range(2):
                        h, c = self.lstm(inputs, (h, c))
                        anchors[cell].append(torch.zeros_like(h))
                        keys[cell].append(self.attn_anchor(h))
                picked.setdefault(d.group, [])
                h, c = self.lstm(inputs, (h, c))
                n = len(d.options)
                if n > len(keys[cell]):
                    raise ValueError(f"decision {d.label!r} points at {n} nodes but the "
                                     f"controller has built {len(keys[cell])} of cell {cell!r}")
                query = torch.tanh(torch.cat(keys[cell][:n]) + self.attn_query(h))  # (n, H)
                logits = self._squash(self.attn_v(query).view(-1), "input")
                mask = torch.zeros(n, dtype=torch.bool, device=device)
                mask[picked[d.group]] = True
                logits = logits.masked_fill(mask, float("-inf"))
            else:
                h, c = self.lstm(inputs, (h, c))
                logits = self._squash(self.heads[self._head_of[d.options]](h).view(-1), "op")
            logp = torch.log_softmax(logits, -1)
            if choices is None:
                probs = logp.detach().exp().cpu()
                index = int(torch.multinomial(probs, 1, generator=generator))
            else:
                value = choices[d.label]
                if value not in d.options:
                    raise ValueError(f"{d.label}: {value!r} is not one of {d.options}")
                index = d.options.index(value)
            log_prob = log_prob + logp[index]
            p = logp.exp()
            entropy = entropy - (p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum()
            out[d.label] = d.options[index]
            if d.kind == "input":
                picked[d.group].append(index)
                inputs = anchors[cell][index]
            else:
                table = self.embeddings[self._head_of[d.options]]
                inputs = table(torch.tensor([index], device=device))
        return Sampled(out, log_prob, entropy)

    def sample(self, generator: torch.Generator | None = None) -> Sampled:
        """Draw one path (a CPU ``generator`` makes it reproducible on any device)."""
        return self._run(None, generator)

    def evaluate(self, choices: Mapping[str, Any]) -> Sampled:
        """Log-probability and entropy of given ``choices`` (teacher forcing)."""
        return self._run(choices, None)


def reinforce_loss(sampled: Sampled, advantage: float, entropy_weight: float) -> torch.Tensor:
    """``-(advantage * log p(path) + entropy_weight * H)``: its gradient descends on the
    negative of REINFORCE's ``(R - b) grad log p`` plus the entropy bonus."""
    return -(advantage * sampled.log_prob + entropy_weight * sampled.entropy)


__all__ = ["Controller", "Sampled", "reinforce_loss"]
