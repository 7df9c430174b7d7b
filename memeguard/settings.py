"""The one ``Settings`` object: every knob of every node, read from ``MEMEGUARD_*`` environment variables.

Defaults are the embedded deployment (SQLite file, in-process queue, CPU analyzer) so that a fresh checkout
runs without any service. Secrets that look like placeholders fail at start-up, not in production traffic.
"""

from __future__ import annotations

import hmac
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from memeguard.blobs import S3Options
from memeguard.schemas import TRIAL_TENANT

PLACEHOLDER_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "secret",
        "password",
        "placeholder",
        "example",
        "todo",
        "xxx",
        "test",
        "dev",
        "default",
        "key",
        "apikey",
        "api-key",
    }
)
MIN_API_KEY_LENGTH = 16
INLINE_BROKER = "inline"
SHIPPED_CLASSIFIER = Path("models") / "current.joblib"  # under data_dir: what `make model` writes
SHIPPED_EMOTION_LEXICON = Path("lexicons") / "zh_common_DUTIR.yaml"  # under data_dir: what `make model` fetches


def is_placeholder(secret: str) -> bool:
    """A secret is a placeholder when it is a well-known dummy word (case-insensitive) or empty."""
    return not secret or secret.strip().lower() in PLACEHOLDER_SECRETS


class FileSecrets(PydanticBaseSettingsSource):
    """``MEMEGUARD_<NAME>_FILE=/path``: the setting's value is that file's content (a Kubernetes or Docker
    secret mounted as a file, so it never sits in the environment or a manifest). The plain variable, when
    also set, wins; a named file that cannot be read stops the start with its name (never its content)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        path = os.environ.get(f"MEMEGUARD_{field_name.upper()}_FILE")
        if not path:
            return None, field_name, False
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"MEMEGUARD_{field_name.upper()}_FILE={path}: cannot read it ({exc.strerror})") from None
        return text, field_name, self.field_is_complex(field)

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            text, _, complex_ = self.get_field_value(field, name)
            if text is not None:
                values[name] = self.decode_complex_value(name, field, text) if complex_ else text
        return values


class Settings(BaseSettings):
    """Effective configuration. ``memeguard config`` prints it with secrets masked."""

    # an empty variable is as if unset (compose passes ``${VAR:-}`` for every optional one): a JSON field's
    # default can then stay out of compose's interpolation, which cannot hold a literal ``{}``
    model_config = SettingsConfigDict(env_prefix="MEMEGUARD_", env_file=None, extra="ignore", env_ignore_empty=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit arguments, then the environment, then ``MEMEGUARD_*_FILE`` secrets."""
        return init_settings, env_settings, FileSecrets(settings_cls)

    data_dir: Path = Field(default=Path(".memeguard"), description="root for the embedded defaults")
    database_url: str = Field(default="", description="SQLAlchemy URL; empty = SQLite in data_dir")
    broker_url: str = Field(
        default=INLINE_BROKER,
        description="'inline' (in-process), a redis:// URL, Redis "
        "Sentinel (sentinel://host:26379;sentinel://host2:26379 with broker_sentinel_master) "
        "or RabbitMQ (amqp://user:password@host:5672/vhost: quorum queues)",
    )
    broker_sentinel_master: str | None = Field(
        default=None, description="the master name the sentinels watch (sentinel:// broker URLs)"
    )
    queue_name: str = "memeguard.analyze"
    vlm_queue: str = Field(
        default="",
        description="the GPU tier's own queue: cascade workers (no VLM loaded) hand "
        "the items they are unsure of to it, vlm workers read it; empty = one queue, a cascade "
        "worker runs both tiers",
    )
    blob_store: str = Field(
        default="", description="file:///path, a path, or s3://bucket/prefix; empty = data_dir/blobs"
    )
    blob_s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, Ceph RGW, a cloud's S3 API); unset: AWS"
    )
    blob_s3_region: str = "us-east-1"
    blob_s3_path_style: bool = Field(default=False, description="bucket in the path, not the host name (MinIO)")
    blob_s3_access_key_id: SecretStr | None = Field(
        default=None, description="unset: boto3's chain (AWS_* environment, ~/.aws, an instance or pod role)"
    )
    blob_s3_secret_access_key: SecretStr | None = None
    blob_retention_days: float | None = Field(
        default=None,
        gt=0,
        description="beat deletes the images of finished jobs this old that nothing still needs; unset: kept",
    )
    blob_timeout_s: float = Field(default=10.0, gt=0, description="connect and read timeout of one store call")
    blob_max_attempts: int = Field(default=4, ge=1, description="tries per store call (backoff with jitter)")
    analyzer: str = Field(default="embedded", description="embedded | vlm | cascade | noop")
    tenant_analyzers: dict[str, Literal["embedded", "cascade", "vlm"]] = Field(
        default_factory=dict, description="cascade only: tenant -> embedded | cascade | vlm (others: cascade)"
    )
    cascade_min_confidence: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="cascade: the embedded verdict stands when at least this confident and its action is not 'tag'",
    )
    vlm_model: str = Field(default="", description="local directory (or cached model id) of GLM-4.6V-Flash")
    vlm_quant: Literal["none", "int8", "bnb8"] = Field(
        default="none", description="none | int8 (torchao, CPU+GPU) | bnb8 (bitsandbytes, CUDA)"
    )
    vlm_device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    vlm_max_pixels: int = Field(default=512 * 512, ge=28 * 28, description="image pixel budget, normal mode")
    vlm_max_new_tokens: int = Field(default=64, ge=1, le=512, description="explanation tokens, normal mode")
    vlm_degraded_pixels: int = Field(default=336 * 336, ge=28 * 28, description="pixel budget when degraded")
    vlm_degraded_new_tokens: int = Field(default=32, ge=1, le=512, description="explanation tokens when degraded")
    vlm_max_queue: int = Field(default=64, ge=1, description="queue depth at which the VLM degrades")
    vlm_gpu_threshold: float = Field(default=0.8, gt=0, le=1, description="GPU memory/utilisation to degrade at")
    vlm_max_frames: int = Field(default=4, ge=1, le=16, description="frames of an animated meme the VLM sees")
    vlm_prefix_cache: bool = Field(default=True, description="reuse the system prompt's KV across batches")
    vlm_calibration: Path | None = Field(
        default=None,
        description="temperature file from `memeguard calibrate` "
        "(fitted for this model, quant and prompt); unset = raw probabilities",
    )
    vlm_explain: Literal["policy", "never", "always"] = Field(
        default="policy", description="policy (items the policy tags or blocks) | never | always"
    )
    policy_file: Path | None = Field(default=None, description="policy YAML; empty = bundled default")
    kb_external: list[Path] = Field(default_factory=list, description="extra knowledge bases (C-HarmKB JSON, our YAML)")
    fingerprints: bool = Field(default=True, description="hash banks + verdict cache in front of the analyzer")
    bank_refresh_s: float = Field(default=30.0, gt=0, le=60, description="how stale a worker's bank view may get")
    kb_overlay: bool = Field(
        default=True,
        description="workers read the approved knowledge-base overlay (memeguard kb) on top of the bundled one",
    )
    kb_refresh_s: float = Field(
        default=30.0, gt=0, le=60, description="how stale a worker's view of the knowledge-base overlay may get"
    )
    releases: bool = Field(
        default=True, description="workers follow the releases (memeguard shadow): promoted artefacts, candidates"
    )
    release_refresh_s: float = Field(
        default=30.0, gt=0, le=60, description="how stale a worker's view of the releases may get"
    )
    cache_retention_days: float = Field(
        default=30.0,
        ge=0,
        description="how long a moderated image stays in the workers' verdict cache (memory); 0 = for ever",
    )
    radar: bool = Field(
        default=True,
        description="count each finished job's new image cluster and phrases for 新梗雷达 (memeguard radar)",
    )
    cache_shared_tenants: list[str] = Field(
        default_factory=list, description="tenants whose verdict caches are shared with each other"
    )
    datasets_dir: Path = Field(default=Path("../shared/datasets"), description="ToxiCN MM, C-HarmKB (not bundled)")
    ocr_threads: int = Field(
        default=1,
        ge=-1,
        description="ONNX Runtime threads for OCR per worker process; -1 = all cores. One worker process per core "
        "with one thread each reads the most memes per core (bench/threads.py: 2x1 26.9 memes/s on 2 cores, "
        "1x2 17.3, 2 processes x all cores 17.1)",
    )
    ocr_rec_batch: int = Field(
        default=1,
        ge=1,
        le=64,
        description="text lines per OCR recogniser call; 1 is fastest on one thread (bench/README.md)",
    )
    ocr_recogniser: Literal["ppocrv5", "ppocrv4"] = Field(
        default="ppocrv5",
        description="OCR text recogniser: ppocrv5 writes 18,383 characters (traditional and rare evasive spellings "
        "included), ppocrv4 6,623 at about a seventh less recogniser time (bench/README.md)",
    )
    classifier_path: Path | None = Field(
        default=None,
        description="artefact from `memeguard train`; unset = the "
        "shipped one, data_dir/models/current.joblib (`make model`), when it exists",
    )
    emotion_lexicon: Path | None = Field(
        default=None,
        description="emotion lexicon the emotion reader learns from (`memeguard train`, `eval clue-emotion`; "
        "the artefact keeps it, workers never read the file); unset = data_dir/lexicons/zh_common_DUTIR.yaml "
        "(`make model` fetches it) when it exists",
    )
    api_keys: dict[str, SecretStr] = Field(default_factory=dict, description="tenant -> API key")
    admin_api_key: SecretStr | None = Field(default=None, description="key for /v1/banks (bank curation)")
    metrics_token: SecretStr | None = Field(
        default=None, description="bearer token for the API's /metrics (tenant names are in it); unset: loopback only"
    )
    console_secret: SecretStr | None = Field(
        default=None, description="signs review console sessions; unset = console off"
    )
    console_secure_cookies: bool = Field(default=True, description="session cookie only over HTTPS")
    review_sla_h: float = Field(
        default=24.0, gt=0, description="hours within which a queued review item should be decided (the console's SLA)"
    )
    review_qa_share: float = Field(
        default=0.02, ge=0, le=1, description="share of automatic allow/block decisions sampled for QA review"
    )
    callback_secrets: dict[str, SecretStr] = Field(
        default_factory=dict, description="tenant -> HMAC secret for callbacks (else its API key)"
    )
    callback_allow: list[str] = Field(
        default_factory=list,
        description="callback hosts or CIDR networks allowed "
        "although internal (on-premise receivers); others must be public addresses",
    )
    callback_http_tenants: list[str] = Field(
        default_factory=list, description="tenants whose callbacks may use plain http ('*': all)"
    )
    callback_max_attempts: int = Field(default=8, ge=1, description="deliveries tried before a callback fails")
    callback_backoff_s: float = Field(default=5.0, gt=0, description="first retry delay; doubles, capped at 1 h")
    callback_timeout_s: float = Field(default=5.0, gt=0)
    callback_poll_s: float = Field(default=5.0, gt=0, description="how often beat runs the callback sender")

    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_frames: int = 8
    max_text_chars: int = 2000
    max_context_bytes: int = 4096
    max_batch_items: int = 256
    max_stream_items: int = Field(default=1000, ge=1, description="items one :stream request may carry")
    max_batch_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="body cap of one :batch request, enforced while reading"
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="body cap of every other request (bank imports, appeals, console forms)",
    )

    rate_limit: str | None = Field(
        default="50/second",
        description="requests per tenant, shared by every API "
        "process through the broker's Redis (a `limits` string such as '50/second'; "
        "'off': no limit)",
    )
    upload_quota: str | None = Field(
        default=None, description="uploads per tenant, e.g. '100000/day' (unset or 'off': none)"
    )
    tenant_limits: dict[str, dict[str, str | int | None]] = Field(
        default_factory=dict, description="per-tenant overrides: tenant -> {rate_limit, upload_quota, max_queued}"
    )
    max_queued: int | None = Field(
        default=10_000,
        ge=1,
        description="queued jobs one tenant may have waiting; "
        "more are refused 429 so one tenant cannot starve the others ('off': none)",
    )
    rate_limit_storage: str | None = Field(
        default=None,
        description="`limits` storage URI; unset: the broker's Redis, or this process's memory when embedded",
    )

    max_attempts: int = Field(default=5, ge=1, description="deliveries before a job is dead-lettered")
    retry_backoff_s: float = 2.0
    retry_backoff_max_s: float = 120.0
    visibility_timeout_s: int = Field(default=3600, description="Redis redelivery delay of unacked jobs")
    redelivery_check_s: int = Field(default=10, ge=1, description="how often workers look for expired unacked jobs")
    broker_timeout_s: float = Field(default=10.0, description="socket timeout talking to the broker")
    requeue_after_s: int = Field(default=600, description="sweeper re-publishes jobs stuck this long")
    sweep_every_s: float = Field(default=60.0, gt=0, description="how often beat runs the sweeper")
    stream_wait_s: float = 30.0

    worker_batch_size: int = Field(
        default=8,
        ge=1,
        description="jobs per worker batch; results of a batch are stored together, so keep it "
        "small for slow analyzers (CPU OCR) and large for cheap ones (cache hits, GPU batches)",
    )
    worker_batch_wait_ms: float = Field(default=10.0, gt=0, description="longest wait to fill a batch")
    task_events: bool = Field(default=False, description="Celery task events (for Flower); cost per job")
    worker_ops_port: int = Field(default=9108, description="worker /metrics /healthz /readyz; 0 = off")
    worker_ops_host: str = Field(
        default="0.0.0.0",
        description="the ops server's bind address (a scraper on "
        "another host needs a routable one; 127.0.0.1 keeps it on the node)",
    )
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("api_keys")
    @classmethod
    def _api_keys_are_real(cls, keys: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for tenant, key in keys.items():
            if tenant == TRIAL_TENANT:
                raise ValueError(f"tenant {TRIAL_TENANT!r} is reserved for the console's try-it page")
            raw = key.get_secret_value()
            if is_placeholder(raw) or len(raw) < MIN_API_KEY_LENGTH:
                raise ValueError(
                    f"API key of tenant {tenant!r} is a placeholder or shorter than "
                    f"{MIN_API_KEY_LENGTH} characters; generate one with `openssl rand -hex 24`"
                )
        return keys

    @field_validator("console_secret")
    @classmethod
    def _console_secret_is_real(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and (is_placeholder(key.get_secret_value()) or len(key.get_secret_value()) < 32):
            raise ValueError("console secret is a placeholder or shorter than 32 characters")
        return key

    @field_validator("rate_limit", "upload_quota", "max_queued", mode="before")
    @classmethod
    def _off_is_none(cls, value: object) -> object:
        """``off`` lifts a limit (an empty variable means "the default", like every other setting)."""
        return None if isinstance(value, str) and value.strip().lower() == "off" else value

    @field_validator("admin_api_key", "console_secret", "metrics_token", mode="before")
    @classmethod
    def _empty_secret_is_none(cls, key: object) -> object:
        """An empty value (compose's ``${MEMEGUARD_ADMIN_API_KEY:-}``) means the feature is off."""
        return None if key == "" else key

    @field_validator("admin_api_key", "metrics_token")
    @classmethod
    def _admin_key_is_real(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and (
            is_placeholder(key.get_secret_value()) or len(key.get_secret_value()) < MIN_API_KEY_LENGTH
        ):
            raise ValueError(
                f"admin API key / metrics token is a placeholder or shorter than {MIN_API_KEY_LENGTH} characters"
            )
        return key

    @model_validator(mode="after")
    def _database_password_is_real(self) -> Settings:
        password = urlsplit(self.effective_database_url).password
        if password is not None and is_placeholder(password):
            raise ValueError("database password in MEMEGUARD_DATABASE_URL is a placeholder; set a real one")
        return self

    @model_validator(mode="after")
    def _sentinel_names_its_master(self) -> Settings:
        if self.broker_url.startswith("sentinel://") and not self.broker_sentinel_master:
            raise ValueError(
                "a sentinel:// broker needs MEMEGUARD_BROKER_SENTINEL_MASTER (the master name the sentinels watch)"
            )
        return self

    @property
    def is_amqp(self) -> bool:
        """RabbitMQ (``amqp://``), the second supported broker."""
        return self.broker_url.startswith(("amqp://", "amqps://", "pyamqp://"))

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """The (host, port) of each sentinel of a ``sentinel://`` broker URL (empty otherwise)."""
        if not self.broker_url.startswith("sentinel://"):
            return []
        hosts = [urlsplit(part) for part in self.broker_url.split(";") if part.strip()]
        return [(h.hostname or "localhost", h.port or 26379) for h in hosts]

    @model_validator(mode="after")
    def _vlm_queue_is_separate(self) -> Settings:
        if self.vlm_queue and self.vlm_queue == self.queue_name:
            raise ValueError("MEMEGUARD_VLM_QUEUE must differ from MEMEGUARD_QUEUE_NAME (the GPU tier's own queue)")
        if self.vlm_queue and self.is_inline:
            raise ValueError(
                "MEMEGUARD_VLM_QUEUE needs a broker: set MEMEGUARD_BROKER_URL=redis://… (the embedded "
                "deployment runs every tier in one process)"
            )
        return self

    @property
    def hands_off(self) -> bool:
        """A cascade worker of a two-queue fleet: runs the embedded tier, hands uncertain items to the GPU queue."""
        return self.analyzer == "cascade" and bool(self.vlm_queue)

    @property
    def loads_vlm(self) -> bool:
        """This worker holds the VLM (a vlm worker, or a cascade worker running both tiers in-process)."""
        return self.analyzer == "vlm" or (self.analyzer == "cascade" and not self.vlm_queue)

    @property
    def worker_queue(self) -> str:
        """The queue a worker consumes (and re-publishes failed batches to): vlm workers of a two-queue fleet
        read the GPU tier's queue, every other worker the main one."""
        return self.vlm_queue if self.analyzer == "vlm" and self.vlm_queue else self.queue_name

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'memeguard.db'}"

    @property
    def effective_classifier_path(self) -> Path | None:
        """MEMEGUARD_CLASSIFIER_PATH, else the shipped classifier (`make model`) when it exists, else None."""
        return self._given_or_shipped(self.classifier_path, SHIPPED_CLASSIFIER)

    @property
    def effective_emotion_lexicon(self) -> Path | None:
        """MEMEGUARD_EMOTION_LEXICON, else the shipped lexicon (`make model`) when it exists, else None."""
        return self._given_or_shipped(self.emotion_lexicon, SHIPPED_EMOTION_LEXICON)

    def _given_or_shipped(self, given: Path | None, shipped: Path) -> Path | None:
        """A path set in the settings wins; else what `make model` writes under data_dir, when it is there."""
        if given is not None:
            return given
        return self.data_dir / shipped if (self.data_dir / shipped).exists() else None

    @property
    def kb_external_given(self) -> bool:
        """MEMEGUARD_KB_EXTERNAL was set (else the classifier's own training knowledge bases are used)."""
        return "kb_external" in self.model_fields_set

    @property
    def effective_blob_store(self) -> str:
        return self.blob_store or str(self.data_dir / "blobs")

    @property
    def s3_options(self) -> S3Options:
        def plain(secret: SecretStr | None) -> str | None:
            return secret.get_secret_value() if secret is not None else None

        return S3Options(
            self.blob_s3_endpoint_url,
            self.blob_s3_region,
            self.blob_s3_path_style,
            plain(self.blob_s3_access_key_id),
            plain(self.blob_s3_secret_access_key),
            self.blob_timeout_s,
            self.blob_max_attempts,
        )

    @property
    def is_inline(self) -> bool:
        return self.broker_url == INLINE_BROKER

    def tenant_for_key(self, presented: str) -> str | None:
        """The tenant owning an API key, compared in constant time against every key (no early exit that
        would time which one matched); None for an empty or unknown key."""
        given = presented.strip().encode()
        found = None
        for tenant, key in self.api_keys.items():
            if hmac.compare_digest(key.get_secret_value().encode(), given) and given:
                found = tenant
        return found

    def callback_secret(self, tenant: str) -> bytes | None:
        """The tenant's callback signing secret: its own entry, else its API key, else None."""
        secret = self.callback_secrets.get(tenant) or self.api_keys.get(tenant)
        return secret.get_secret_value().encode() if secret is not None else None

    def masked(self) -> dict[str, Any]:
        """Settings as plain data with every secret (API keys, URL passwords) replaced by ``***``."""
        data = self.model_dump(mode="json")
        data["api_keys"] = {tenant: "***" for tenant in self.api_keys}
        data["callback_secrets"] = {tenant: "***" for tenant in self.callback_secrets}
        data["database_url"] = mask_url(self.effective_database_url)
        data["broker_url"] = mask_url(self.broker_url)
        data["blob_store"] = self.effective_blob_store
        for secret in ("blob_s3_access_key_id", "blob_s3_secret_access_key"):
            data[secret] = "***" if getattr(self, secret) is not None else None
        data["classifier_path"] = str(self.effective_classifier_path) if self.effective_classifier_path else None
        return data


def mask_url(url: str) -> str:
    """Replace the password of a URL by ``***`` so it can be printed or logged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once. Tests build ``Settings(...)`` directly instead."""
    return Settings()
