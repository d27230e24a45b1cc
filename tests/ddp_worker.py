"""Run by ``torchrun`` from tests/test_distributed*.py, not collected by pytest: trains each config of a JSON spec on
every rank of one gloo process group (``pqstudy.train.train`` / ``pqstudy.generation.train.train_generator`` join the
group the script started) and saves each rank's final weights, so a test can compare the ranks with each other and
with one process.

    torchrun --standalone --nproc-per-node 2 tests/ddp_worker.py SPEC.json
    SPEC.json: {"out": DIR,
                "configs": {NAME: RunConfig.to_dict(), ...},
                "generators": {NAME: {"config": GenRunConfig.to_dict(), "tokenizer": RUN_DIR, "stop_at": N|null}},
                "nan_at": {NAME: {"rank": R, "step": S}}}
    →  DIR/NAME/rank<r>.pt on every rank (any section may be left out)

``nan_at``: run NAME's loss becomes NaN on rank R at step S (the other ranks' losses stay finite); each rank then
writes the ``TrainingDiverged`` it raised to DIR/NAME/rank<r>.error instead of weights, and the launch goes on.
"""

import contextlib
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from pqstudy.config import from_dict
from pqstudy.generation.config import gen_from_dict
from pqstudy.generation.train import GeneratorLoss, train_generator
from pqstudy.losses import AutoencoderLoss
from pqstudy.train import TrainingDiverged, train


@contextlib.contextmanager
def nan_loss(cls, method: str, rank: int, step: int):
    """``cls.method`` (a loss, or a tuple whose first item is the loss) returns a NaN loss on rank ``rank`` at its
    ``step``-th call (from 0), inside the block."""
    real, calls = getattr(cls, method), []

    def spoilt(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        calls.append(1)
        if dist.get_rank() != rank or len(calls) - 1 != step:
            return out
        return (out[0] * float("nan"), *out[1:]) if isinstance(out, tuple) else out * float("nan")

    setattr(cls, method, spoilt)
    try:
        yield
    finally:
        setattr(cls, method, real)


def run(name: str, train_fn, loss_cls, loss_method: str):
    """``train_fn()`` (→ trained), saving this rank's weights, or under ``nan_at`` the error it raised."""
    nan_at = spec.get("nan_at", {}).get(name)
    poison = nan_loss(loss_cls, loss_method, nan_at["rank"], nan_at["step"]) if nan_at else contextlib.nullcontext()
    try:
        with poison:
            trained = train_fn()
        torch.save(trained.model.state_dict(), out / name / f"rank{dist.get_rank()}.pt")
    except TrainingDiverged as err:
        if not nan_at:
            raise
        (out / name / f"rank{dist.get_rank()}.error").write_text(str(err))


spec = json.loads(Path(sys.argv[1]).read_text())
out = Path(spec["out"])
dist.init_process_group("gloo")
for name, config in spec.get("configs", {}).items():
    run(name, lambda config=config, name=name: train(from_dict(config), out / name, progress=False),
        AutoencoderLoss, "generator_loss")
for name, gen in spec.get("generators", {}).items():
    run(name, lambda gen=gen, name=name: train_generator(gen_from_dict(gen["config"]), out / name, gen["tokenizer"],
                                                         progress=False, stop_at=gen.get("stop_at")),
        GeneratorLoss, "forward")
dist.barrier()
dist.destroy_process_group()
