"""examples/flask_app through Flask's own test client, with a real worker and emulator.

The worker delivers the completion callback over real HTTP into the app's receiver view
(the same app served by wsgiref in a thread), so the whole web-app round trip is exercised.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import celery
import pytest
from flask import Flask
from flask.testing import FlaskClient

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

SECRET = "flask-example-secret-0123456789"
MODEL = "#g1_nova-2-general"
FINAL = {"completed", "error", "failed", "timeout"}


def _app(stack: Stack, **config: Any) -> Flask:
    """The example app from its factory, after the stack set the environment it reads."""
    add_example_path("flask_app")
    from stt_flask import create_app

    app = create_app({"TESTING": True, **config})
    # celery_init_app made the app's Celery current and default: that is what publishes.
    assert celery.current_app.main == app.extensions["celery"].main == "stt_flask"
    assert app.extensions["celery"].conf.broker_url == stack.env["STT_BROKER_URL"]
    return app


@pytest.fixture
def idle(make_stack: Callable[..., Stack]) -> tuple[Stack, FlaskClient]:
    """No worker: whatever a request enqueued would stay on the broker."""
    stack = make_stack(
        STT_CALLBACK_SECRET=SECRET, STT_CALLBACK_ALLOW_NETWORKS="127.0.0.0/8", start_worker=False
    )
    return stack, _app(stack).test_client()


def test_enqueue_read_back_and_receive_the_signed_callback(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(STT_CALLBACK_SECRET=SECRET, STT_CALLBACK_ALLOW_NETWORKS="127.0.0.0/8")
    # One app object serves both the test client and, over real HTTP, the worker's callback.
    app = _app(stack)
    from stt_flask.views import RECEIVED

    client = app.test_client()
    with serve_wsgi(app) as base:
        app.config["STT_CALLBACK_URL"] = f"{base}/callbacks/stt"
        as_json = client.post("/jobs", json={"url": OK_URL, "model": MODEL, "language": "en"})
        as_form = client.post("/jobs", data={"url": stack.emulator.sample_url(3), "model": MODEL})
        assert as_json.status_code == 202, as_json.data
        assert as_form.status_code == 202, as_form.data
        job_id, form_id = as_json.json["id"], as_form.json["id"]  # type: ignore[index]
        assert as_json.headers["Location"] == f"/jobs/{job_id}"

        def read(jid: str) -> dict[str, Any]:
            response = client.get(f"/jobs/{jid}")
            assert response.status_code == 200
            return dict(response.json)  # type: ignore[arg-type]

        job = poll_until(lambda: read(job_id), lambda j: j["status"] in FINAL)
        assert job["status"] == "completed", job
        assert job["text"] == stack.emulator.expected_transcript(OK_URL)
        assert job["language"] == "en" and job["billed_seconds"] > 0 and job["cost_usd"] > 0
        form_job = poll_until(lambda: read(form_id), lambda j: j["status"] in FINAL)
        assert form_job["status"] == "completed"

        assert_callbacks_delivered(stack, RECEIVED, read, [job_id, form_id])

    assert client.get("/jobs/no-such-job").status_code == 404


def test_the_callback_view_refuses_unsigned_forged_and_stale_posts(
    idle: tuple[Stack, FlaskClient],
) -> None:
    from stt_flask.views import RECEIVED

    _, client = idle

    def post(body: bytes, headers: dict[str, str]) -> int:
        response = client.post(
            "/callbacks/stt", data=body, content_type="application/json", headers=headers
        )
        return response.status_code

    assert_receiver_refuses_forgeries(post, RECEIVED, SECRET)


@pytest.mark.parametrize(("payload", "field"), BAD_JSON)
def test_bad_json_input_is_a_400_naming_the_field(
    idle: tuple[Stack, FlaskClient], payload: object, field: str
) -> None:
    stack, client = idle
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    response = client.post("/jobs", data=raw, content_type="application/json")
    assert response.status_code == 400, response.data
    error = response.json
    assert error is not None and error["field"] == field and field in error["error"]
    assert stack.broker_messages() == 0
    assert stack.store.list_jobs(limit=None) == []


@pytest.mark.parametrize(("form", "field"), BAD_FORM)
def test_bad_form_input_is_a_400_naming_the_field(
    idle: tuple[Stack, FlaskClient], form: dict[str, str], field: str
) -> None:
    stack, client = idle
    response = client.post("/jobs", data=form)
    assert response.status_code == 400, response.data
    assert response.json is not None and response.json["field"] == field
    assert stack.broker_messages() == 0
    assert stack.store.list_jobs(limit=None) == []
