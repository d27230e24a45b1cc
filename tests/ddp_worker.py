"""Run by ``torchrun`` from tests/test_distributed.py, not collected by pytest: trains each config of a JSON spec on
every rank of one gloo process group (``pqstudy.train.train`` joins the group the script started) and saves each
rank's final weights, so the test can compare the ranks with each other and with one process.

    torchrun --standalone --nproc-per-node 2 tests/ddp_worker.py SPEC.json
    SPEC.json: {"out": DIR, "configs": {NAME: RunConfig.to_dict(), ...}}  →  DIR/NAME/rank<r>.pt on every rank
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from pqstudy.config import from_dict
from pqstudy.train import train

spec = json.loads(Path(sys.argv[1]).read_text())
out = Path(spec["out"])
dist.init_process_group("gloo")
for name, config in spec["configs"].items():
    trained = train(from_dict(config), out / name, progress=False)
    torch.save(trained.model.state_dict(), out / name / f"rank{dist.get_rank()}.pt")
dist.barrier()
dist.destroy_process_group()
