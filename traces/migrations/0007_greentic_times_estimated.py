"""greentic runs stored before `times_estimated` existed: their times were always
estimated from the file's mtime (the format records none). Re-ingesting would not
rewrite them (their fingerprint is the file's content), so mark them here."""

from django.db import migrations


def mark_greentic(apps, schema_editor):
    Run = apps.get_model("traces", "Run")
    Run.objects.filter(format="greentic", times_estimated=False).update(times_estimated=True)


class Migration(migrations.Migration):
    dependencies = [("traces", "0006_drop_ingestjob_paths_kind")]

    operations = [migrations.RunPython(mark_greentic, migrations.RunPython.noop)]
