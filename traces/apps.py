from django.apps import AppConfig
from django.db.models.signals import post_migrate


class TracesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "traces"
    verbose_name = "Traces"

    def ready(self) -> None:
        post_migrate.connect(_ensure_search_triggers, sender=self)


def _ensure_search_triggers(sender, using: str, **kwargs) -> None:
    from django.db import connections

    from traces.search.index import ensure_triggers

    ensure_triggers(connections[using])
