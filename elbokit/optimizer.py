"""Adam for the training loop: torch's algorithm, kernels and state format, without the
per-call wrappers of ``torch.optim.Optimizer``.

Measured here (2-core Xeon, torch 2.13, a 64-64-8 VAE's 12 parameter tensors):
``torch.optim.Adam(fused=True).step()`` took 167 us, the two kernels it calls 66 us; its
``zero_grad`` another ~45 us. The difference is Python around the kernels: a profiler
record, step hooks, ``torch._dynamo.graph_break()`` twice per step, a dynamo-disabled call
for ``zero_grad``, and grouping the tensors by device and dtype afresh every step. At small
batch sizes that is a fifth of a training step. Constructing ``torch.optim.Adam`` also
imports ``torch._dynamo`` (2 s here) in a process that never compiles anything.

:class:`Adam` keeps what the loop and the checkpoints rely on: ``param_groups`` (each a
dict with ``"lr"`` and torch's other Adam options), ``state`` (per parameter: ``"step"``,
``"exp_avg"``, ``"exp_avg_sq"``), ``found_inf`` (a flagged step is skipped, as torch's
fused Adam does), ``zero_grad``, ``state_dict`` and ``load_state_dict`` in torch's format,
so checkpoints move between the two both ways. Where torch has a fused kernel for the
parameters (floating tensors on the CPU or CUDA, one device and dtype) the step calls it
directly, exactly as ``torch.optim.Adam(fused=True)`` does (tested bit for bit); any
other case (an older checkpoint's unfused state, mixed devices) goes through torch's own
functional ``torch.optim.adam.adam``, the function ``Adam.step`` calls.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

DEFAULTS = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False,
            "maximize": False, "foreach": None, "capturable": False, "differentiable": False,
            "fused": None, "decoupled_weight_decay": False}


def fusable(params: Iterable[torch.Tensor]) -> bool:
    """Whether torch's fused Adam kernel takes these parameters: floating tensors, all on
    one CPU or CUDA device, of one dtype."""
    params = list(params)
    return (bool(params) and all(p.is_floating_point() for p in params)
            and len({(p.device, p.dtype) for p in params}) == 1
            and params[0].device.type in ("cpu", "cuda"))


class Adam:
    """Adam (Kingma & Ba 2015) over ``params``, one parameter group; ``fused``: step with
    torch's fused kernel (default: when :func:`fusable`)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 fused: bool | None = None, **options) -> None:
        params = list(params)
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"Adam got unexpected options {sorted(unknown)}")
        if fused is None:
            fused = fusable(params)
        if fused and not fusable(params):
            raise ValueError("the fused Adam needs floating parameters on one CPU or CUDA "
                             "device, of one dtype")
        self.param_groups = [{"params": params, "lr": lr, **DEFAULTS, **options,
                              "fused": fused or None}]
        self.state: dict[torch.nn.Parameter, dict[str, torch.Tensor]] = {}
        self.found_inf: torch.Tensor | None = None

    # -- the loop's calls --------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps = self._gather(group)
            if not params:
                continue
            beta1, beta2 = group["betas"]
            if group["fused"] and not (group["amsgrad"] or group["decoupled_weight_decay"]
                                       or group["maximize"] or group["capturable"]):
                # torch.optim.adam._fused_adam for one device and dtype: the same two
                # kernels, in the same order, with the same arguments.
                torch._foreach_add_(steps, 1)
                torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps,
                                   lr=group["lr"], beta1=beta1, beta2=beta2,
                                   weight_decay=group["weight_decay"], eps=group["eps"],
                                   amsgrad=False, maximize=False, grad_scale=None,
                                   found_inf=self.found_inf)
                if self.found_inf is not None:  # a skipped step does not count
                    torch._foreach_sub_(steps, [self.found_inf] * len(steps))
                continue
            from torch.optim.adam import adam  # the rare path: imports torch._dynamo

            adam(
                params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps,
                amsgrad=group["amsgrad"], has_complex=any(torch.is_complex(p) for p in params),
                beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"],
                eps=group["eps"], maximize=group["maximize"], foreach=group["foreach"],
                capturable=group["capturable"], differentiable=group["differentiable"],
                fused=group["fused"], grad_scale=None, found_inf=self.found_inf,
                decoupled_weight_decay=group["decoupled_weight_decay"])

    def _gather(self, group: dict) -> tuple[list[torch.Tensor], ...]:
        """The parameters with a gradient and their state, created at the first step as
        torch's Adam creates it (``step`` a 0-dim float32 on the parameter's device when
        fused, on the CPU otherwise)."""
        params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps = [], [], [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state.get(p)
            if not state:
                state = self.state[p] = self._new_state(p, group)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            if group["amsgrad"]:
                max_sqs.append(state["max_exp_avg_sq"])
            steps.append(state["step"])
        return params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps

    @staticmethod
    def _new_state(p: torch.Tensor, group: dict) -> dict[str, torch.Tensor]:
        on_device = group["fused"] or group["capturable"]
        dtype = (torch.float32 if group["fused"] else
                 torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32)
        state = {"step": torch.zeros((), dtype=dtype, device=p.device if on_device else "cpu"),
                 "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                 "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    # -- persistence: torch's format ---------------------------------------------------
    def state_dict(self) -> dict:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``, as
        ``torch.optim.Optimizer.state_dict`` writes it (parameters numbered in order)."""
        index = {}
        groups = []
        for group in self.param_groups:
            numbers = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                numbers.append(index[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": numbers})
        state = {index[id(p)]: dict(values) for p, values in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Take a state written by :meth:`state_dict` or by ``torch.optim.Adam`` over the same
        parameters: the options of each group (``lr``, ``fused``, ...) and each parameter's
        moments and step count, placed as torch places them (moments in the parameter's
        dtype and device; ``step`` a float32 on that device when fused, else as saved)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError("the saved optimizer state has another number of parameter groups")
        by_index: dict[int, torch.nn.Parameter] = {}
        for group, saved in zip(self.param_groups, groups, strict=True):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError("the saved optimizer state has another number of parameters")
            by_index.update(zip(saved["params"], group["params"], strict=True))
        for group, saved in zip(self.param_groups, groups, strict=True):
            group.update({**DEFAULTS, **{k: v for k, v in saved.items() if k != "params"}})
            group["betas"] = tuple(group["betas"])
        self.state = {}
        for number, values in state_dict["state"].items():
            p = by_index[int(number)]
            group = next(g for g in self.param_groups if any(q is p for q in g["params"]))
            self.state[p] = {key: self._loaded(key, value, p, group) for key, value in values.items()}

    @staticmethod
    def _loaded(key: str, value: object, p: torch.Tensor, group: dict) -> object:
        """A saved state value placed as torch's Adam places it."""
        if not torch.is_tensor(value):
            return value
        if key == "step":
            return (value.to(dtype=torch.float32, device=p.device)
                    if group["fused"] or group["capturable"] else value)
        return value.to(dtype=p.dtype, device=p.device)
