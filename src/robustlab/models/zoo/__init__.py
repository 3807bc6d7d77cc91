"""RobustBench's architectures as robustlab models, parameter names as in the zoo's checkpoints.

    model, key = load_zoo_model("dm-wrn-70-16", "Rebuffi2021Fixing_70_16.safetensors")

A zoo download is a ``.pt``: convert it once, tensors only, with `convert_checkpoint` (CLI:
``robustlab convert weights.pt --out weights.safetensors``). Names: `robustlab.models.zoo.registry`.
No network: the user brings the file.
"""

from robustlab.models.zoo.convert import convert_checkpoint
from robustlab.models.zoo.load import load_zoo_model
from robustlab.models.zoo.registry import EXAMPLES, INPUT_SHAPE, ZooArch, zoo_arch

__all__ = ["EXAMPLES", "INPUT_SHAPE", "ZooArch", "convert_checkpoint", "load_zoo_model", "zoo_arch"]
