"""Lightning callbacks that measure a run's cost: step time, token throughput and peak memory."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import lightning as L
import psutil
import torch


class CostMeter(L.Callback):
    """Median step time, tokens per second and peak memory over `fit`.

    Peak memory is CUDA's max allocated bytes on a GPU; on a CPU it is the peak resident set size of this process
    sampled every 5 ms during fit (stated in the record as `memory_kind`), with the resident size when fit started
    (`fit_start_memory_bytes`), so the rise that training itself caused can be read off even in a shared process.
    """

    def __init__(self) -> None:
        self.step_times: list[float] = []
        self.tokens = 0
        self.train_seconds = 0.0
        self.peak_bytes = 0
        self.start_bytes: int | None = None
        self.memory_kind = "cpu_rss_peak"
        self._start = 0.0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def _sample_rss(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, process.memory_info().rss)
            self._stop.wait(0.005)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            self.memory_kind = "cuda_max_allocated"
            torch.cuda.reset_peak_memory_stats(pl_module.device)
            self.start_bytes = torch.cuda.memory_allocated(pl_module.device)
        else:
            self.start_bytes = psutil.Process().memory_info().rss
            self._stop.clear()
            self._sampler = threading.Thread(target=self._sample_rss, daemon=True)
            self._sampler.start()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.memory_kind == "cuda_max_allocated":
            self.peak_bytes = torch.cuda.max_memory_allocated(pl_module.device)
        elif self._sampler is not None:
            self._stop.set()
            self._sampler.join()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        elapsed = time.perf_counter() - self._start
        self.step_times.append(elapsed)
        self.train_seconds += elapsed
        self.tokens += int(batch["attention_mask"].sum())

    def summary(self) -> dict[str, Any]:
        return {
            "step_time_median_s": statistics.median(self.step_times) if self.step_times else None,
            "steps": len(self.step_times),
            "tokens_per_s": self.tokens / self.train_seconds if self.train_seconds else None,
            "train_tokens": self.tokens,
            "peak_memory_bytes": self.peak_bytes,
            "memory_kind": self.memory_kind,
            "fit_start_memory_bytes": self.start_bytes,
        }
