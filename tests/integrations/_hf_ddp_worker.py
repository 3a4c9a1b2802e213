"""The Hugging Face Trainer under torchrun (gloo, CPU): ``torchrun --nproc-per-node 2
_hf_ddp_worker.py MODE RUN_DIR SYNC_DIR COORD``.

MODE: ``complete``; ``sigterm`` (every rank writes ``SYNC_DIR/ready-rank<r>`` holding its pid in
its 7th forward, then waits, bounded, until it knows of a tickwork stop: the test signals one
rank, or torchrun); ``raise`` (rank 1 raises ValueError in its 5th forward). COORD: ``auto`` (the
callback makes the Coordinator) or ``user`` (the script starts the process group and makes one,
passed as ``stop=``). Each rank prints, as its last line, JSON saying what the callback did."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import warnings
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import transformers

import tickwork.distributed
from tickwork.integrations.transformers import TickworkCallback


def record(sync_dir: str, what: dict[str, Any]) -> None:
    """This rank's record, as ``SYNC_DIR/record-rank<r>.json`` (renamed into place: the ranks
    share stdout, where two lines can interleave)."""
    path = os.path.join(sync_dir, f"record-rank{what['rank']}.json")
    with open(path + ".tmp", "w") as file:
        json.dump(what, file)
    os.replace(path + ".tmp", path)
    print(json.dumps(what), flush=True)


WAIT = 60.0  # seconds a rank waits for the test's signal to reach it; reached only on failure


class Tiny(torch.nn.Module):
    def __init__(self, mode: str, sync_dir: str) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.calls = 0
        self.mode = mode
        self.sync_dir = sync_dir
        self.source: Any = None  # what knows of a tickwork stop

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        rank = int(os.environ["RANK"])
        if self.mode == "raise" and rank == 1 and self.calls == 5:
            raise ValueError("loss is nan")
        if self.mode == "sigterm" and self.calls == 7:
            ready = os.path.join(self.sync_dir, f"ready-rank{rank}")
            with open(ready + ".tmp", "w") as file:
                file.write(str(os.getpid()))
            os.replace(ready + ".tmp", ready)
            source = self.source()
            limit = time.monotonic() + WAIT
            while not source.should_stop() and time.monotonic() < limit:
                time.sleep(0.01)  # a test worker waiting for the test's signal, bounded
        return {"loss": torch.nn.functional.mse_loss(self.layer(x), labels)}


def main() -> None:
    warnings.simplefilter("ignore")
    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    mode, run_dir, sync_dir, coord_mode = sys.argv[1:5]
    if coord_mode == "user":  # as documented: a with block, which reports what leaves it
        torch.distributed.init_process_group("gloo")
        with tickwork.distributed.Coordinator(namespace="user") as user:
            train(mode, run_dir, sync_dir, user)
    else:
        train(mode, run_dir, sync_dir, None)


def train(mode: str, run_dir: str, sync_dir: str, user: Any) -> None:
    callback = TickworkCallback(
        signals=(signal.SIGTERM, signal.SIGUSR1), save_deadline=40.0, stop=user
    )
    model = Tiny(mode, sync_dir)
    model.source = lambda: user or callback.coordinator
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=generator), torch.randn(64, 1, generator=generator)
    args = transformers.TrainingArguments(
        output_dir=run_dir,
        max_steps=12,
        save_strategy="steps",
        save_steps=2,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        logging_strategy="no",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        ddp_backend="gloo",
    )
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=[{"x": x[i], "labels": y[i]} for i in range(64)],
        callbacks=[callback],
    )
    try:
        trainer.train()
    finally:
        record(
            sync_dir,
            {
                "rank": int(os.environ["RANK"]),
                "final_checkpoint": callback.final_checkpoint,
                "stopped": callback.stopped,
                "global_step": trainer.state.global_step,
            },
        )


if __name__ == "__main__":
    main()
