"""The server's settings: each is the environment variable ``STYLER_<NAME>`` (e.g. STYLER_MAX_SIZE),
with its type, default and meaning here, once. Limits apply per server process."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict

from .config import DEFAULT_DEVICE, DEFAULT_PRECISION, DEVICE_HELP, PRECISION_HELP, PRECISIONS
from .images import MAX_PIXELS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STYLER_", frozen=True, extra="ignore")

    data_dir: Path = Field(Path("styler-data"), description="folder of the jobs and styles")
    weights: Path | None = Field(None, description="f_θ model file; default: the shipped model")
    device: str = Field(DEFAULT_DEVICE, description=DEVICE_HELP)
    precision: Literal[PRECISIONS] = Field(DEFAULT_PRECISION, description=PRECISION_HELP)
    threads: NonNegativeInt = Field(0, description="torch CPU threads; 0: torch's default")
    max_upload_bytes: PositiveInt = Field(20 * 2**20, description="a whole request body")
    max_pixels: PositiveInt = Field(MAX_PIXELS, description="per input image, from its header")
    max_size: PositiveInt = Field(1024, description="shorter side of a processed image")
    max_side: PositiveInt = Field(2048, description="longer side of a processed image")
    request_timeout_s: PositiveFloat = Field(60.0, description="fast path: waiting + running")
    max_inferences: PositiveInt = Field(2, description="fast-path inferences running at once")
    max_waiting: PositiveInt = Field(8, description="fast-path requests waiting; more get 503")
    job_workers: PositiveInt = Field(1, description="solver threads")
    job_queue: PositiveInt = Field(16, description="new jobs waiting for a thread; more get 503")
    max_iters: PositiveInt = Field(500, description="solver iterations per job")
    job_retention_days: PositiveFloat = Field(
        7.0, description="finished jobs and uploaded styles are kept this long"
    )
    cache_mb: NonNegativeInt = Field(
        256, description="memory for cached style codes and content encodings; 0: none"
    )

    def limits(self) -> dict[str, int | float]:
        prefixes = ("max_", "request_", "job_")
        return {k: v for k, v in self.model_dump().items() if k.startswith(prefixes)}
