# ruff: noqa: INP001, S106  (an example, not in a package; its SECRET_KEY is a placeholder)
"""Django with Polyqueue, in one file: a view that writes a row and enqueues a job inside
one `transaction.atomic()` block, on Django's own connection. If the block rolls back, there
is neither the row nor the job; if it commits, a worker runs the job.

In a project, the settings go in settings.py, `queue` in an app's tasks.py, and the view in
views.py. Django and Polyqueue must use the same database (POLYQUEUE_DATABASE_URL) for the job
to be part of Django's transaction. Django 4.2+ with psycopg 3: `pip install 'polyqueue[psycopg]'`.

Run it: `POLYQUEUE_DATABASE_URL=postgresql://... python django_site.py runserver`, and the
worker: `polyqueue worker django_site:queue`.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import unquote, urlsplit

import django
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.http import require_POST
from pydantic import BaseModel

from polyqueue import Polyqueue


def django_database(url: str) -> dict[str, str]:
    """Django's DATABASES entry for a postgresql:// URL."""
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",  # psycopg 3 when it is installed
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


settings.configure(
    SECRET_KEY="an example, not a secret",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    DATABASES={"default": django_database(os.environ["POLYQUEUE_DATABASE_URL"])},
)
django.setup()

queue = Polyqueue()  # the same database as Django's


class Welcome(BaseModel):
    signup_id: int
    email: str


@queue.register("emails.welcome")
def send_welcome(payload: Welcome) -> str:
    return f"welcome mail to {payload.email}"


def create_tables() -> None:
    """The example's one table (a real project has a model and a migration)."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS signups (id serial, email text UNIQUE)")


@require_POST
def signup(request: HttpRequest) -> JsonResponse:
    email = request.POST["email"]
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO signups (email) VALUES (%s) RETURNING id", [email])
                (signup_id,) = cursor.fetchone()
            job_id = queue.sync.enqueue(
                send_welcome,
                Welcome(signup_id=signup_id, email=email),
                connection=connection.connection,  # Django's psycopg connection: one transaction
            )
            if request.POST.get("dry_run"):
                transaction.set_rollback(True)  # neither the row nor the job is kept
                return JsonResponse({"dry_run": True, "job_id": job_id})
    except IntegrityError:
        return JsonResponse({"error": "already signed up"}, status=409)
    return JsonResponse({"job_id": job_id}, status=201)


urlpatterns = [path("signup", signup)]


if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    create_tables()
    execute_from_command_line(sys.argv)
