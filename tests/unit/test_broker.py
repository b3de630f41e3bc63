"""tasks/broker.py: which broker holds waiting polls, and the countdowns sent to it."""

from __future__ import annotations

import pytest
from celery import Celery
from hypothesis import given
from hypothesis import strategies as st

from tasks.broker import (
    EXCHANGE_NAME,
    QUEUE_NAME,
    BrokerKind,
    BrokerMisconfigured,
    broker_countdown,
    broker_kind,
    check_producer,
    holds_countdowns_in_worker,
)
from tasks.celeryconfig import celery_config, producer_config
from tasks.settings import Settings


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/0", BrokerKind.REDIS),
        ("rediss://h:6380/0", BrokerKind.REDIS),
        ("amqp://guest:guest@127.0.0.1:5672/stt", BrokerKind.RABBITMQ),
        ("amqps://u:p@h/v", BrokerKind.RABBITMQ),
        ("pyamqp://h//", BrokerKind.RABBITMQ),
        ("filesystem:///tmp/x", BrokerKind.FILESYSTEM),
        ("sqs://", BrokerKind.OTHER),
    ],
)
def test_broker_kind(url: str, kind: BrokerKind) -> None:
    assert broker_kind(url) is kind


@given(st.floats(min_value=0.001, max_value=100_000))
def test_rabbitmq_countdowns_are_whole_seconds_never_early(seconds: float) -> None:
    sent = broker_countdown(BrokerKind.RABBITMQ, seconds)
    assert sent == int(sent) and sent >= 1  # kombu raises below one second
    assert seconds <= sent < seconds + 1


@given(st.floats(min_value=0, max_value=100_000))
def test_other_brokers_keep_the_exact_countdown(seconds: float) -> None:
    assert broker_countdown(BrokerKind.REDIS, seconds) == seconds
    assert broker_countdown(BrokerKind.RABBITMQ, 0) == 0


def _app(config: dict[str, object]) -> Celery:
    app = Celery("t", set_as_current=False)
    app.conf.update(config)
    return app


def test_rabbitmq_config_declares_a_quorum_queue_on_a_topic_exchange_with_confirms() -> None:
    settings = Settings(broker_url="amqp://u:p@rabbit:5672/stt")
    config = celery_config(settings)
    assert config["broker_transport_options"] == {"confirm_publish": True}
    assert config["task_default_queue_type"] == "quorum"
    (queue,) = config["task_queues"]
    assert queue.name == QUEUE_NAME and queue.queue_arguments == {"x-queue-type": "quorum"}
    assert (queue.exchange.name, queue.exchange.type) == (EXCHANGE_NAME, "topic")
    assert not holds_countdowns_in_worker(_app(config))
    check_producer(_app(producer_config(settings)))  # a web app with it: accepted


def test_redis_workers_hold_countdowns_and_cap_them() -> None:
    config = celery_config(Settings())
    assert holds_countdowns_in_worker(_app(config))
    assert config["worker_eta_task_limit"] == 20_000
    assert celery_config(Settings(eta_task_limit=0))["worker_eta_task_limit"] is None
    assert "task_queues" not in producer_config(Settings())
    check_producer(_app(producer_config(Settings())))  # Redis: nothing to refuse


def test_a_web_app_on_rabbitmq_without_producer_config_is_refused() -> None:
    app = _app({"broker_url": "amqp://h//", "task_routes": {"stt.*": {"queue": "stt"}}})
    assert holds_countdowns_in_worker(app)
    with pytest.raises(BrokerMisconfigured, match="producer_config"):
        check_producer(app)


def test_eta_task_limit_is_read_from_the_environment() -> None:
    assert Settings.from_env({"STT_ETA_TASK_LIMIT": "500"}).eta_task_limit == 500
