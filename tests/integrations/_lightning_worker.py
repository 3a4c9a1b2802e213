"""A Lightning training run in its own process, for the SIGTERM test: it trains, waits at step 6
for the test's SIGTERM, and prints (as JSON) what the callback and Lightning did."""

from __future__ import annotations

import json
import signal
import sys
import time
import warnings

warnings.simplefilter("ignore")  # Lightning's advice about num_workers and loggers

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from tickwork.integrations.lightning import TickworkCallback  # noqa: E402

run_dir, ready = sys.argv[1], sys.argv[2]
calls: list[int] = []


def before(signum: int, frame: object) -> None:
    """The handler the user had before fit(): it must still run."""
    calls.append(signum)


signal.signal(signal.SIGTERM, before)


class Waiting(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        if self.global_step == 6:
            with open(ready, "w") as file:
                file.write("ready")
            limit = time.monotonic() + 60.0
            while not self.trainer.received_sigterm and time.monotonic() < limit:
                time.sleep(0.01)  # a test worker waiting for the test's signal, bounded
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


data = DataLoader(TensorDataset(torch.randn(32, 4), torch.randn(32, 1)), batch_size=4)
callback = TickworkCallback(save_deadline=30.0)
trainer = pl.Trainer(
    max_epochs=5,
    callbacks=[
        pl.callbacks.ModelCheckpoint(dirpath=run_dir, every_n_train_steps=2, save_top_k=-1),
        callback,
    ],
    logger=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    accelerator="cpu",
    devices=1,
    default_root_dir=run_dir,
)
raised = None
try:
    trainer.fit(Waiting(), data)
except BaseException as exc:  # Lightning ends fit() with SIGTERMException (a SystemExit)
    raised = type(exc).__name__
print(
    json.dumps(
        {
            "raised": raised,
            "received_sigterm": trainer.received_sigterm,
            "before_calls": calls,
            "handler_restored": signal.getsignal(signal.SIGTERM) is before,
            "final_checkpoint": callback.final_checkpoint,
            "stopped": callback.stopped,
            "global_step": trainer.global_step,
        }
    )
)
