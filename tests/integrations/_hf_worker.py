"""A Hugging Face Trainer run in its own process: ``complete``, ``raise`` (an uncaught exception
at step 5: the error path goes through sys.excepthook) or ``sigterm`` (waits at step 6 for the
test's SIGTERM). Prints what the callback did as JSON when train() returns."""

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

from tickwork.integrations.transformers import TickworkCallback


class Tiny(torch.nn.Module):
    """A linear layer returning its loss the way the Trainer expects."""

    def __init__(self, hold: str | None = None, fail_at: int | None = None) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.calls = 0
        self.hold = hold
        self.fail_at = fail_at
        self.sigterm = False

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise ValueError("loss is nan")
        if self.hold is not None and self.calls == 7:
            with open(self.hold, "w") as file:
                file.write("ready")
            limit = time.monotonic() + 60.0
            while not self.sigterm and time.monotonic() < limit:
                time.sleep(0.01)  # a test worker waiting for the test's signal, bounded
        return {"loss": torch.nn.functional.mse_loss(self.layer(x), labels)}


def dataset() -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 4, generator=generator), torch.randn(32, 1, generator=generator)
    return [{"x": x[i], "labels": y[i]} for i in range(32)]


def arguments(output_dir: str, max_steps: int = 8) -> Any:
    return transformers.TrainingArguments(
        output_dir=output_dir,
        max_steps=max_steps,
        save_strategy="steps",
        save_steps=2,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        logging_strategy="no",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )


def main() -> None:
    warnings.simplefilter("ignore")
    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    mode, run_dir = sys.argv[1], sys.argv[2]
    ready = sys.argv[3] if len(sys.argv) > 3 else None
    model = Tiny(hold=ready if mode == "sigterm" else None, fail_at=5 if mode == "raise" else None)
    calls: list[int] = []

    def before(signum: int, frame: object) -> None:
        calls.append(signum)
        model.sigterm = True

    signal.signal(signal.SIGTERM, before)
    hook = sys.excepthook
    callback = TickworkCallback(save_deadline=30.0)
    trainer = transformers.Trainer(
        model=model, args=arguments(run_dir), train_dataset=dataset(), callbacks=[callback]
    )
    trainer.train()  # mode "raise": the exception leaves the process through sys.excepthook
    print(
        json.dumps(
            {
                "before_calls": calls,
                "handler_restored": signal.getsignal(signal.SIGTERM) is before,
                "excepthook_restored": sys.excepthook is hook,
                "final_checkpoint": callback.final_checkpoint,
                "stopped": callback.stopped,
                "global_step": trainer.state.global_step,
            }
        )
    )


if __name__ == "__main__":
    main()
