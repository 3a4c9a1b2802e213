"""Lightning DDP on CPU (gloo, 2 processes), run as a script: Lightning starts rank 1 by running
this script again. ``python _lightning_ddp_worker.py MODE RUN_DIR SYNC_DIR COORD``.

MODE: ``complete``; ``stall`` (the callback detects stalls with a 3 s timeout; rank 1 sleeps in
step 5); ``sigterm`` (every rank writes ``SYNC_DIR/ready-rank<r>`` holding its pid at
step 6, then waits, bounded, until it knows of a tickwork stop: the test signals one of them);
``raise`` (rank 1 raises ValueError at step 5). COORD: ``auto`` (the callback makes the
Coordinator) or ``user`` (the module makes one in setup() and hands it to the callback). Each rank
prints, as its last line, JSON saying what the callback did."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
import warnings
from typing import Any

warnings.simplefilter("ignore")  # Lightning's advice about num_workers and loggers

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import tickwork.distributed  # noqa: E402
from tickwork.integrations.lightning import TickworkCallback  # noqa: E402

mode, run_dir, sync_dir, coord_mode = sys.argv[1:5]
logging.getLogger("tickwork").setLevel(logging.INFO)  # what tickwork did goes into the output
logging.getLogger("tickwork").addHandler(logging.StreamHandler())


def record(sync_dir: str, what: dict[str, Any]) -> None:
    """This rank's record, as ``SYNC_DIR/record-rank<r>.json`` (renamed into place: the ranks
    share stdout, where two lines can interleave)."""
    path = os.path.join(sync_dir, f"record-rank{what['rank']}.json")
    with open(path + ".tmp", "w") as file:
        json.dump(what, file)
    os.replace(path + ".tmp", path)
    print(json.dumps(what), flush=True)


WAIT = 60.0  # seconds a rank waits for the test's signal to reach it; reached only on failure


class Module(pl.LightningModule):
    def __init__(self, callback: TickworkCallback) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.callback = callback
        self.user_coord: tickwork.distributed.Coordinator | None = None

    def setup(self, stage: str) -> None:
        if coord_mode == "user":  # the process group exists from here on
            self.user_coord = tickwork.distributed.Coordinator(namespace="user")
            self.callback.stop = self.user_coord

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        rank = self.global_rank
        if mode == "raise" and rank == 1 and self.global_step == 5:
            raise ValueError("loss is nan")
        if mode == "stall" and rank == 1 and self.global_step == 5:
            time.sleep(WAIT)  # stuck (GIL released) while rank 0 waits in the all-reduce
        if mode == "sigterm" and self.global_step == 6:
            source = self.user_coord or self.callback.coordinator
            assert source is not None, "no coordinator under DDP"
            ready = os.path.join(sync_dir, f"ready-rank{rank}")
            with open(ready + ".tmp", "w") as file:
                file.write(str(os.getpid()))
            os.replace(ready + ".tmp", ready)
            limit = time.monotonic() + WAIT
            while not source.should_stop() and time.monotonic() < limit:
                time.sleep(0.01)  # a test worker waiting for the test's signal, bounded
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    data = DataLoader(
        TensorDataset(
            torch.randn(64, 4, generator=generator), torch.randn(64, 1, generator=generator)
        ),
        batch_size=4,
    )
    stalls = mode == "stall"
    callback = TickworkCallback(
        signals=(signal.SIGTERM, signal.SIGUSR1),
        save_deadline=40.0,
        stall_timeout=3.0 if stalls else None,
        stall_dir=os.path.join(sync_dir, "stalls") if stalls else None,
    )
    module = Module(callback)
    trainer = pl.Trainer(
        max_epochs=1,
        max_steps=12,
        callbacks=[
            pl.callbacks.ModelCheckpoint(dirpath=run_dir, every_n_train_steps=2, save_top_k=-1),
            callback,
        ],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=2,
        strategy=os.environ.get("TICKWORK_TEST_STRATEGY", "ddp"),
        default_root_dir=run_dir,
    )
    raised = None
    try:
        trainer.fit(module, data)
    except BaseException as exc:
        raised = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if module.user_coord is not None:
            module.user_coord.close(5.0)
        record(
            sync_dir,
            {
                "rank": trainer.global_rank,
                "raised": raised,
                "final_checkpoint": callback.final_checkpoint,
                "stopped": callback.stopped,
                "global_step": trainer.global_step,
            },
        )


if __name__ == "__main__":  # ddp_spawn imports this module in each rank
    main()
