"""Settings for every function, read once from the environment the template gives it."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    table_name: str = Field(min_length=1, description="DynamoDB table holding timers")
    rules_path: str = Field(default="/redflag/rules", pattern=r"^/[A-Za-z0-9_./-]*[A-Za-z0-9_.-]$")
    rules_cache_seconds: int = Field(default=60, ge=0)
    sender_email: str = ""
    alert_topic_arn: str = ""
    idempotency_table_name: str = ""
    due_shards: int = Field(default=8, ge=1, le=256)
    sweeps_per_minute: int = Field(default=3, ge=1, le=6, description="passes per scheduled run, evenly spaced")
    sweep_page_size: int = Field(default=100, ge=1, le=1000)
    completed_retention_days: int = Field(default=30, ge=1)
    event_id_retention_hours: int = Field(default=48, ge=1)
    max_future_skew_seconds: int = Field(default=300, ge=0)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]
