from django.contrib import admin, messages

from .ingest.batches import retried
from .ingest.store import delete_runs
from .models import ApiToken, Call, EntityLink, LogEntry, Run, Step, TraceFile, TraceSource


@admin.register(TraceFile)
class TraceFileAdmin(admin.ModelAdmin):
    list_display = ["display_name", "format", "status", "size", "checked_at"]
    list_filter = ["status", "format", "uploaded"]
    search_fields = ["path", "display_name", "error"]


@admin.register(TraceSource)
class TraceSourceAdmin(admin.ModelAdmin):
    list_display = ["path", "enabled", "rescan_every", "last_scan_finished_at", "files_failed"]


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["name", "format", "status", "started_at", "step_count", "steps_failed"]
    list_filter = ["format", "status"]
    search_fields = ["external_id", "name", "error"]
    raw_id_fields = ["source_file"]
    show_full_result_count = False

    # Runs are written by the store alone, which keeps their summaries and the read
    # models (RunCount, FailureCause) with them: here they are seen, or deleted through it.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        self.delete_queryset(request, Run.objects.filter(pk=obj.pk))

    def get_deleted_objects(self, objs, request):
        """What deleting runs deletes, their rows said by the runs' own counts: the store
        deletes them (the rows' admins change nothing, so Django's collector would find
        no permission to), and listing them would load every step of a big run."""
        runs = list(objs)
        counts = {
            Run._meta.verbose_name_plural: len(runs),
            Step._meta.verbose_name_plural: sum(run.step_count for run in runs),
            Call._meta.verbose_name_plural: sum(run.call_count for run in runs),
            EntityLink._meta.verbose_name_plural: sum(run.link_count for run in runs),
            LogEntry._meta.verbose_name_plural: sum(run.log_count for run in runs),
        }
        return [str(run) for run in runs], counts, set(), []

    def delete_queryset(self, request, queryset):
        run_ids = list(queryset.values_list("pk", flat=True))
        retried(lambda: delete_runs(run_ids))  # met an ingest (a deadlock): again


class StoreWrittenAdmin(admin.ModelAdmin):
    """A run's rows (steps, calls, links, log lines) are written by the store alone,
    which keeps the read models (FailureCause, EntityCounter, the runs' summaries, the
    search index) in their transaction: here they are only seen. A run is deleted
    whole, through the store (RunAdmin)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Step)
class StepAdmin(StoreWrittenAdmin):
    list_display = ["name", "type", "status", "run", "started_at"]
    list_filter = ["status"]
    search_fields = ["key", "name", "error"]
    raw_id_fields = ["run", "parent"]
    show_full_result_count = False


@admin.register(Call)
class CallAdmin(StoreWrittenAdmin):
    list_display = ["tool", "operation", "status", "step"]
    raw_id_fields = ["run", "step"]
    show_full_result_count = False


@admin.register(EntityLink)
class EntityLinkAdmin(StoreWrittenAdmin):
    list_display = ["link_type", "entity_type", "entity_id", "external_id", "step"]
    search_fields = ["entity_id", "external_id"]
    raw_id_fields = ["run", "step"]
    show_full_result_count = False


@admin.register(LogEntry)
class LogEntryAdmin(StoreWrittenAdmin):
    list_display = ["run", "seq", "level", "message"]
    list_filter = ["level"]
    raw_id_fields = ["run", "step"]
    show_full_result_count = False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Adding a token shows it once, in the confirmation message; only its hash is kept."""

    list_display = ["name", "user", "created", "last_used"]
    list_filter = ["user"]
    search_fields = ["name", "user__username"]
    fields = ["user", "name", "created", "last_used"]
    readonly_fields = ["created", "last_used"]
    raw_id_fields = ["user"]

    def get_readonly_fields(self, request, obj=None):
        # A token belongs to one user for life: move it by making a new one.
        return [*self.readonly_fields, "user"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if not change:
            token = ApiToken.generate()
            obj.token_hash = ApiToken.hash(token)
            messages.warning(
                request,
                f"The new token is {token} — copy it now: it is not stored and cannot be "
                "shown again.",
            )
        super().save_model(request, obj, form, change)
