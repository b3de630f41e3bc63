"""examples/django_app through Django's own test client, with a real worker and emulator.

The worker delivers the completion callback over real HTTP into the app's receiver view
(served by wsgiref in a thread), so the whole web-app round trip is exercised.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import celery
import django
import pytest
from django.test import Client, override_settings
from django.test.utils import setup_test_environment

from tests.fixtures.stack import Stack
from tests.fixtures.webapps import (
    BAD_FORM,
    BAD_JSON,
    OK_URL,
    add_example_path,
    assert_callbacks_delivered,
    assert_receiver_refuses_forgeries,
    poll_until,
    serve_wsgi,
)

SECRET = "django-example-secret-0123456789"
MODEL = "aai/slam-1"


def _set_up(stack: Stack) -> Iterator[tuple[Stack, Any]]:
    """Set the example project up in this process, as ``manage.py`` would."""
    add_example_path("django_app")
    os.environ["DJANGO_SETTINGS_MODULE"] = "stt_site.settings"
    django.setup()  # once per process; later calls are no-ops
    if not getattr(setup_test_environment, "_stt_done", False):
        setup_test_environment()  # allows the test client's "testserver" host
        setup_test_environment._stt_done = True  # type: ignore[attr-defined]
    import stt_site

    # Importing stt_site made its Celery app current, as in a real Django process; the
    # stack's fixture replaced it since, so put it back and prove that is what publishes.
    stt_site.celery_app.set_current()
    stt_site.celery_app.set_default()
    assert celery.current_app.main == "stt_site"
    assert stt_site.celery_app.conf.broker_url == stack.env["STT_BROKER_URL"]
    with override_settings(STT_CALLBACK_SECRET=SECRET, STT_CALLBACK_URL=None):
        yield stack, Client()


@pytest.fixture
def site(make_stack: Callable[..., Stack]) -> Iterator[tuple[Stack, Any]]:
    """A stack with a running worker, and the example project."""
    yield from _set_up(
        make_stack(STT_CALLBACK_SECRET=SECRET, STT_CALLBACK_ALLOW_NETWORKS="127.0.0.0/8")
    )


@pytest.fixture
def idle_site(make_stack: Callable[..., Stack]) -> Iterator[tuple[Stack, Any]]:
    """The same without a worker: whatever a request enqueued would stay on the broker."""
    yield from _set_up(
        make_stack(
            STT_CALLBACK_SECRET=SECRET,
            STT_CALLBACK_ALLOW_NETWORKS="127.0.0.0/8",
            start_worker=False,
        )
    )


def test_enqueue_read_back_and_receive_the_signed_callback(site: tuple[Stack, Any]) -> None:
    from django.core.wsgi import get_wsgi_application
    from transcriptions.views import RECEIVED

    stack, client = site
    with serve_wsgi(get_wsgi_application()) as base:
        with override_settings(STT_CALLBACK_URL=f"{base}/callbacks/stt"):
            as_json = client.post(
                "/jobs",
                json.dumps({"url": OK_URL, "model": MODEL, "metadata": {"order": 12}}),
                content_type="application/json",
            )
            as_form = client.post(
                "/jobs", {"url": stack.emulator.sample_url(2), "model": MODEL, "temperature": "0.2"}
            )
        assert as_json.status_code == 202, as_json.content
        assert as_form.status_code == 202, as_form.content
        job_id, form_id = as_json.json()["id"], as_form.json()["id"]
        assert as_json["Location"] == f"/jobs/{job_id}"

        def read(jid: str) -> dict[str, Any]:
            response = client.get(f"/jobs/{jid}")
            assert response.status_code == 200
            return dict(response.json())

        final = {"completed", "error", "failed", "timeout"}
        job = poll_until(lambda: read(job_id), lambda j: j["status"] in final)
        assert job["status"] == "completed", job
        assert job["text"] == stack.emulator.expected_transcript(OK_URL)
        assert job["metadata"] == {"order": 12} and job["cost_usd"] > 0
        assert job["stored_at"] and job["enqueued_at"] <= job["stored_at"]
        form_job = poll_until(lambda: read(form_id), lambda j: j["status"] in final)
        assert form_job["status"] == "completed" and form_job["temperature"] == 0.2

        # The worker POSTed the result into the app's own receiver view, which verified it.
        assert_callbacks_delivered(stack, RECEIVED, read, [job_id, form_id])

    assert client.get("/jobs/no-such-job").status_code == 404


def test_the_callback_view_refuses_unsigned_forged_and_stale_posts(
    idle_site: tuple[Stack, Any],
) -> None:
    from transcriptions.views import RECEIVED

    _, client = idle_site

    def post(body: bytes, headers: dict[str, str]) -> int:
        response = client.post(
            "/callbacks/stt", body, content_type="application/json", headers=headers
        )
        return int(response.status_code)

    assert_receiver_refuses_forgeries(post, RECEIVED, SECRET)


@pytest.mark.parametrize(("payload", "field"), BAD_JSON)
def test_bad_json_input_is_a_400_naming_the_field(
    idle_site: tuple[Stack, Any], payload: object, field: str
) -> None:
    stack, client = idle_site
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    response = client.post("/jobs", raw, content_type="application/json")
    assert response.status_code == 400, response.content
    error = response.json()
    assert error["field"] == field and field in error["error"]
    assert stack.broker_messages() == 0
    assert stack.store.list_jobs(limit=None) == []


@pytest.mark.parametrize(("form", "field"), BAD_FORM)
def test_bad_form_input_is_a_400_naming_the_field(
    idle_site: tuple[Stack, Any], form: dict[str, str], field: str
) -> None:
    stack, client = idle_site
    response = client.post("/jobs", form)
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert stack.broker_messages() == 0
    assert stack.store.list_jobs(limit=None) == []
