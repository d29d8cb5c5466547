"""A model's layout (module tree, linear shapes, parameter shapes and ties, config) as JSON, and the meta-device model
rebuilt from it with plain torch modules.

Planning a run needs the architecture only: which linears exist and their shapes, what the parameters count, the
config fields the methods read. Importing a transformers model class for that costs about two seconds, most of a
bad-budget error's time. So the layout of a model whose config is a local file is described once, from the real
meta-device model, and cached under `<cache>/skeletons/`, keyed by the config file's bytes, the model kind, the
label count and the transformers version; later plans rebuild it from the cache without importing transformers.
The built-in offline models' layouts ship in bench/run/layouts/ for the pinned transformers
(`python -m bench.run.shipped_layouts` writes them), so even a machine's first plan skips transformers' model classes.

The rebuilt model has the same module names, every `nn.Linear` as an `nn.Linear` of the same shape, torch's
containers as themselves, every other module as an `nn.Module` of the same class name holding parameters of the
same shapes and dtypes, shared modules and tied parameters shared again, and `.config` as a namespace of the
config's fields. tests/test_skeleton.py checks it against the transformers model, with every method's budget range
and solved knobs.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

LAYOUT_VERSION = 1
MACHINE_FIELDS = {"_name_or_path", "name_or_path"}  # where this machine keeps the files: not part of a layout
CONTAINERS = ("ModuleList", "ModuleDict", "Sequential")  # rebuilt as themselves: indexable, sized, iterable


def describe(model: nn.Module) -> dict[str, Any]:
    """The layout of `model` (JSON-ready): its config and every module in `named_modules` order, duplicates kept."""
    from torch import nn  # lazy: `bench list` imports this module (through bench.run.models) without torch

    modules, seen_modules, seen_parameters = [], {}, {}
    for path, module in model.named_modules(remove_duplicate=False):
        if id(module) in seen_modules:
            modules.append({"path": path, "same_as": seen_modules[id(module)]})
            continue
        seen_modules[id(module)] = path
        entry: dict[str, Any] = {"path": path, "class": type(module).__name__}
        if isinstance(module, nn.Linear):
            entry["linear"] = [module.in_features, module.out_features, module.bias is not None]
        container = next((kind for kind in CONTAINERS if isinstance(module, getattr(nn, kind))), None)
        if container:
            entry["container"] = container
        parameters = {}
        for name, parameter in module._parameters.items():
            if parameter is None:
                continue
            full = f"{path}.{name}" if path else name
            if id(parameter) in seen_parameters:
                parameters[name] = {"same_as": seen_parameters[id(parameter)]}
            else:
                seen_parameters[id(parameter)] = full
                parameters[name] = {
                    "shape": list(parameter.shape),
                    "dtype": str(parameter.dtype).removeprefix("torch."),
                }
        entry["parameters"] = parameters
        modules.append(entry)
    return {"version": LAYOUT_VERSION, "config": _config_fields(model.config), "modules": modules}


def _config_fields(config: Any) -> dict[str, Any]:
    """The config's saved fields and its plain-valued attributes (defaults such as `is_decoder` are not saved)."""
    fields = {name: value for name, value in config.to_dict().items() if name not in MACHINE_FIELDS}
    quiet = logging.getLogger("transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # reading deprecated aliases (torch_dtype, use_return_dict) warns
    try:
        for name in dir(config):
            if name.startswith("_") or name in fields or name in MACHINE_FIELDS:
                continue
            try:
                value = getattr(config, name)
            except Exception:  # a property that needs what a bare config lacks
                continue
            if value is None or isinstance(value, bool | int | float | str):
                fields[name] = value
    finally:
        quiet.setLevel(level)
    return fields


def rebuild(layout: dict[str, Any]) -> nn.Module:
    """The meta-device model `layout` describes (see the module docstring)."""
    import torch  # lazy: `bench list` imports this module (through bench.run.models) without torch
    from torch import nn

    classes: dict[str, type[nn.Module]] = {}
    built: dict[str, nn.Module] = {}
    parameters: dict[str, nn.Parameter] = {}
    for entry in layout["modules"]:
        path = entry["path"]
        if "same_as" in entry:
            module = built[entry["same_as"]]
        elif "linear" in entry:
            in_features, out_features, bias = entry["linear"]
            module = nn.Linear(in_features, out_features, bias=bias, device="meta")
        elif "container" in entry:
            module = getattr(nn, entry["container"])()
        else:
            module = classes.setdefault(entry["class"], type(entry["class"], (nn.Module,), {}))()
        if "same_as" not in entry:
            for name, spec in entry["parameters"].items():
                full = f"{path}.{name}" if path else name
                parameter = (
                    parameters[spec["same_as"]]
                    if "same_as" in spec
                    else nn.Parameter(torch.empty(spec["shape"], dtype=getattr(torch, spec["dtype"]), device="meta"))
                )
                parameters[full] = parameter
                setattr(module, name, parameter)
        if path:
            parent, _, child = path.rpartition(".")
            built[parent].add_module(child, module)
        built[path] = module
    model = built[""]
    model.config = SimpleNamespace(**layout["config"])
    return model
