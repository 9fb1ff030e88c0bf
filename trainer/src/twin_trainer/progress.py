"""The run's progress as JSON lines appended to a file (the configuration's `progressPath`), for
a person watching: `twin up` reads it to draw one live line per run (the stage, step k of N, the
loss, tokens/s). Each line is one whole JSON object written with one call, so a reader polling
the file never acts on half a line it cannot parse. Without a path nothing is written."""

from __future__ import annotations

import json
import time


class Progress:
    """Appends `{"stage": ..., "elapsed": seconds since the run started, ...}` lines."""

    def __init__(self, path: str | None):
        self.path = path
        self.started = time.monotonic()

    def report(self, stage: str, **fields) -> None:
        if not self.path:
            return
        line = json.dumps({"stage": stage, "elapsed": round(time.monotonic() - self.started, 3), **fields})
        try:
            with open(self.path, "a", encoding="utf-8") as file:
                file.write(line + "\n")
        except OSError:
            # Progress is for a person watching; a run never fails for want of it.
            pass

    def steps(self, stage: str):
        """A transformers TrainerCallback reporting each optimiser step of `stage` (`sft`,
        `dpo`): the step, of how many, its loss and the tokens seen so far."""
        from transformers import TrainerCallback

        progress = self

        class Steps(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                progress.report(stage, step=0, steps=state.max_steps, tokens=0)

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    progress.report(
                        stage,
                        step=state.global_step,
                        steps=state.max_steps,
                        loss=float(logs["loss"]),
                        tokens=int(state.num_input_tokens_seen or 0),
                    )

        return Steps()
