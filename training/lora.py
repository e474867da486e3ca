"""Hand-written LoRA for the text tower's attention projections (no peft dependency).

``W x + (alpha / r) * B A x`` with ``A`` random, ``B`` zero, so training starts
from the pretrained function; :func:`merge_lora` folds ``B A`` back into ``W``
so the exported ONNX graph is a plain BERT.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ATTENTION_TARGETS = ("query", "key", "value", "attention.output.dense")


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))  # (r, in)
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale

    def merged(self) -> nn.Linear:
        out = nn.Linear(
            self.base.in_features, self.base.out_features, bias=self.base.bias is not None
        )
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.scale * self.lora_b @ self.lora_a)
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def _targets(model: nn.Module, targets: tuple[str, ...]) -> list[tuple[nn.Module, str, nn.Linear]]:
    found = []
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and any(full.endswith(t) for t in targets):
                found.append((module, child_name, child))
    return found


def apply_lora(
    model: nn.Module,
    *,
    rank: int = 8,
    alpha: float = 16.0,
    targets: tuple[str, ...] = ATTENTION_TARGETS,
) -> int:
    """Freeze ``model`` and wrap its attention projections; returns the trainable count."""
    for p in model.parameters():
        p.requires_grad_(False)
    n = 0
    for parent, child_name, child in _targets(model, targets):
        wrapped = LoRALinear(child, rank, alpha)
        setattr(parent, child_name, wrapped)
        n += wrapped.lora_a.numel() + wrapped.lora_b.numel()
    return n


def merge_lora(model: nn.Module) -> None:
    """Replace every :class:`LoRALinear` in ``model`` by its merged plain ``nn.Linear``."""
    for _name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.merged())
